#include "coordinator/scheduler.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace hipserve::coordinator {

struct SchedulerCore::Sequence {
  SequenceRequest req;
  SequenceId seq_id;
  uint64_t epoch = 0;       // group the sequence's KV lives on
  int64_t reservation = 0;  // KV tokens reserved at admission
  int kv_len = 0;           // tokens in the workers' KV
  int prefilled = 0;        // prompt (or, resuming, history) tokens sent
  // > 0 while resuming on a new group: the history (prompt + generated) to prefill again.
  int history_len = 0;
  int progress_reported = 0;  // prompt tokens last reported in a prefill-progress event
  bool sent_any = false;
  bool cancel = false;
  bool finished = false;
  std::vector<int32_t> generated;
  std::shared_ptr<const Tokenizer> tokenizer;  // the decoder's; outlives group swaps
  std::unique_ptr<IncrementalDecoder> decoder;
  std::string pending_text;  // decoded but not yet emitted (possible stop-string prefix)
  size_t max_stop_len = 0;
  std::vector<int32_t> pending_ids;
  Clock::time_point admitted, first_token, last_token;
};

namespace {

// Prefill chunks that do not end a prompt end on multiples of this (HipConfig::block_q and
// tail_queries defaults; the GPU requires block_q 64). See Plan.
constexpr int kPrefillCutAlign = 64;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Largest prefix length <= n of `s` that does not split a UTF-8 character.
size_t Utf8SafePrefix(const std::string& s, size_t n) {
  while (n > 0 && n < s.size() && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return n;
}

}  // namespace

void Deliver(const SinkEvents& events) {
  for (const SinkEvent& e : events) {
    if (e.sink == nullptr) continue;
    switch (e.kind) {
      case SinkEvent::Kind::kPrefillProgress:
        e.sink->OnPrefillProgress(e.processed, e.total);
        break;
      case SinkEvent::Kind::kTokens:
        e.sink->OnTokens(e.ids, e.text, e.completion_tokens);
        break;
      case SinkEvent::Kind::kFinish:
        e.sink->OnFinish(e.finish);
        break;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// SchedulerCore

SchedulerCore::SchedulerCore(const SchedulerOptions& options) : options_(options) {}

SchedulerCore::~SchedulerCore() = default;

void SchedulerCore::SetWorkerGroup(std::shared_ptr<WorkerGroup> group,
                                   std::shared_ptr<const Tokenizer> tok, SinkEvents* events) {
  // Sequences on the old group lost their KV: they resume on the new one (recovery on) or
  // fail. A group serving another model cannot continue them.
  const bool same_model = group == nullptr || model_identity_.empty() ||
                          model_identity_ == absl::StrCat(group->model_info().name, "/",
                                                          group->model_info().vocab_size);
  if (options_.recovery_timeout_s > 0 && same_model) {
    if (group_ != nullptr)
      LoseGroup(absl::UnavailableError("worker group was reconfigured"), events);
  } else {
    for (auto& s : active_) {
      FinishSequence(*s, FinishReason::kError,
                     absl::UnavailableError("worker group was reconfigured"), events);
    }
    active_.clear();
  }
  pending_release_.clear();
  group_ = std::move(group);
  tokenizer_ = std::move(tok);
  if (group_ != nullptr) {
    model_identity_ = absl::StrCat(group_->model_info().name, "/", group_->model_info().vocab_size);
  }
  // Admission follows what the workers can hold (the smallest rank decides).
  if (group_ && group_->model_info().kv_capacity_tokens > 0) {
    options_.kv_budget_tokens = group_->model_info().kv_capacity_tokens;
  }
  ++group_epoch_;
  if (group_ == nullptr) {
    if (options_.recovery_timeout_s > 0 && !recovering_) {
      recovering_ = true;
      recovery_deadline_ =
          Clock::now() +
          std::chrono::milliseconds(static_cast<int64_t>(options_.recovery_timeout_s * 1000));
    }
    return;
  }
  if (recovering_ && !active_.empty()) {
    LOG(INFO) << "worker group rebuilt: resuming " << active_.size()
              << " request(s), re-prefilling their history";
  }
  recovering_ = false;
  for (auto& s : active_) s->epoch = group_epoch_;
}

void SchedulerCore::Suspend(Sequence& s) {
  s.kv_len = 0;
  s.prefilled = 0;
  s.sent_any = false;  // nothing to release on the next group
  s.history_len =
      s.generated.empty() ? 0 : static_cast<int>(s.req.prompt.size() + s.generated.size());
}

void SchedulerCore::LoseGroup(const absl::Status& cause, SinkEvents* events) {
  if (options_.recovery_timeout_s <= 0) {
    FailAll(absl::UnavailableError(cause.message()), events);
  } else {
    for (auto& s : active_) Suspend(*s);
    if (!recovering_) {
      recovering_ = true;
      recovery_deadline_ =
          Clock::now() +
          std::chrono::milliseconds(static_cast<int64_t>(options_.recovery_timeout_s * 1000));
      if (!active_.empty() || !queue_.empty()) {
        LOG(WARNING) << cause.message() << "; " << active_.size() << " running and "
                     << queue_.size() << " queued request(s) wait up to "
                     << options_.recovery_timeout_s << " s for the group to be rebuilt";
      }
    }
  }
  group_ = nullptr;
  pending_release_.clear();
}

std::optional<Clock::time_point> SchedulerCore::recovery_deadline() const {
  if (!recovering_) return std::nullopt;
  return recovery_deadline_;
}

void SchedulerCore::ExpireRecovery(Clock::time_point now, SinkEvents* events) {
  if (!recovering_ || now < recovery_deadline_) return;
  recovering_ = false;
  if (active_.empty() && queue_.empty()) return;
  LOG(ERROR) << "worker group not rebuilt within " << options_.recovery_timeout_s << " s; failing "
             << active_.size() + queue_.size() << " request(s)";
  FailAll(absl::UnavailableError(absl::StrCat(
              "the worker group was lost and not rebuilt within the recovery timeout (",
              options_.recovery_timeout_s, " s); retry the request")),
          events);
}

absl::Status SchedulerCore::Submit(SequenceRequest request) {
  if (static_cast<int>(queue_.size()) >= options_.max_queue) {
    return absl::ResourceExhaustedError(absl::StrCat("request queue is full (", queue_.size(),
                                                     " waiting, limit ", options_.max_queue, ")"));
  }
  const int64_t need = static_cast<int64_t>(request.prompt.size()) + request.max_tokens;
  if (need > options_.kv_budget_tokens) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "request needs ", need, " KV tokens (", request.prompt.size(), " prompt + ",
        request.max_tokens, " max_tokens); the KV budget is ", options_.kv_budget_tokens));
  }
  if (by_id_.contains(request.request_id)) {
    return absl::AlreadyExistsError(
        absl::StrCat("request_id '", request.request_id, "' is already active"));
  }
  auto s = std::make_unique<Sequence>();
  s->req = std::move(request);
  s->seq_id = SequenceId(next_seq_id_++);
  s->reservation = need;
  for (const std::string& stop : s->req.stop) {
    s->max_stop_len = std::max(s->max_stop_len, stop.size());
  }
  by_id_[s->req.request_id] = s.get();
  queue_.push_back(std::move(s));
  return absl::OkStatus();
}

int SchedulerCore::Abort(const std::vector<std::string>& ids, SinkEvents* events) {
  int found = 0;
  for (const std::string& id : ids) {
    auto it = by_id_.find(id);
    if (it == by_id_.end() || it->second->finished) continue;
    it->second->cancel = true;
    ++found;
  }
  if (found == 0) return 0;
  // Queued requests hold no KV: they end now. So do active ones while no group is installed
  // (waiting for recovery: their KV went with the old group).
  for (auto it = queue_.begin(); it != queue_.end();) {
    if ((*it)->cancel) {
      FinishSequence(**it, FinishReason::kAbort, absl::OkStatus(), events);
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
  if (group_ == nullptr) {
    for (auto& s : active_) {
      if (s->cancel) FinishSequence(*s, FinishReason::kAbort, absl::OkStatus(), events);
    }
    RemoveFinished();
  }
  return found;
}

bool SchedulerCore::HasWork() const {
  return group_ != nullptr && (!active_.empty() || !queue_.empty() || !pending_release_.empty());
}

SchedulerStats SchedulerCore::Stats() const {
  SchedulerStats st;
  st.active = static_cast<int>(active_.size());
  st.queued = static_cast<int>(queue_.size());
  st.kv_tokens_reserved = kv_reserved_;
  st.steps = steps_;
  st.generated_tokens = generated_;
  return st;
}

void SchedulerCore::FinishSequence(Sequence& s, FinishReason reason, absl::Status status,
                                   SinkEvents* events) {
  if (s.finished) return;
  s.finished = true;
  const Clock::time_point now = Clock::now();
  SinkEvent e;
  e.kind = SinkEvent::Kind::kFinish;
  e.sink = s.req.sink;
  e.request_id = s.req.request_id;
  FinishInfo& info = e.finish;
  info.reason = status.ok() ? reason : FinishReason::kError;
  info.status = std::move(status);
  info.prompt_tokens = static_cast<int>(s.req.prompt.size());
  info.completion_tokens = static_cast<int>(s.generated.size());
  info.hip = s.req.applied_hip;
  if (s.admitted != Clock::time_point()) info.timing.queue_s = Seconds(s.admitted - s.req.arrival);
  if (!s.generated.empty()) {
    info.timing.ttft_s = Seconds(s.first_token - s.req.arrival);
    if (s.generated.size() > 1 && s.last_token > s.first_token) {
      info.timing.decode_tokens_per_s =
          (s.generated.size() - 1) / Seconds(s.last_token - s.first_token);
    }
  }
  info.timing.total_s = Seconds(now - s.req.arrival);
  if (s.sent_any && s.epoch == group_epoch_) pending_release_.push_back(s.seq_id);
  if (s.admitted != Clock::time_point()) kv_reserved_ -= s.reservation;
  by_id_.erase(s.req.request_id);
  events->push_back(std::move(e));
}

void SchedulerCore::FailAll(const absl::Status& status, SinkEvents* events) {
  for (auto& s : active_) FinishSequence(*s, FinishReason::kError, status, events);
  for (auto& s : queue_) FinishSequence(*s, FinishReason::kError, status, events);
  active_.clear();
  queue_.clear();
}

void SchedulerCore::RemoveFinished() {
  active_.erase(std::remove_if(active_.begin(), active_.end(),
                               [](const std::unique_ptr<Sequence>& s) { return s->finished; }),
                active_.end());
}

void SchedulerCore::OnToken(Sequence& s, int32_t token, SinkEvents* events) {
  const Clock::time_point now = Clock::now();
  if (s.generated.empty()) s.first_token = now;
  s.last_token = now;
  s.generated.push_back(token);
  ++generated_;
  const int completion = static_cast<int>(s.generated.size());
  auto emit = [&](size_t text_len) {
    std::string text = s.pending_text.substr(0, text_len);
    s.pending_text.erase(0, text_len);
    if (!s.pending_ids.empty() || !text.empty()) {
      SinkEvent e;
      e.kind = SinkEvent::Kind::kTokens;
      e.sink = s.req.sink;
      e.request_id = s.req.request_id;
      e.ids = std::move(s.pending_ids);
      e.text = std::move(text);
      e.completion_tokens = completion;
      events->push_back(std::move(e));
    }
    s.pending_ids.clear();
  };
  if (!s.req.ignore_eos && s.tokenizer->IsEos(token)) {
    s.pending_text += s.decoder->Flush();
    emit(s.pending_text.size());
    FinishSequence(s, FinishReason::kEos, absl::OkStatus(), events);
    return;
  }
  s.pending_ids.push_back(token);
  s.pending_text += s.decoder->Add(token);
  // Stop strings: earliest match in the not-yet-emitted text (enough is held back that a
  // match can never start in text already sent).
  size_t best = std::string::npos;
  for (const std::string& stop : s.req.stop) {
    size_t pos = s.pending_text.find(stop);
    if (pos < best) best = pos;
  }
  if (best != std::string::npos) {
    emit(best);
    FinishSequence(s, FinishReason::kStop, absl::OkStatus(), events);
    return;
  }
  const bool stop_id = std::find(s.req.stop_token_ids.begin(), s.req.stop_token_ids.end(), token) !=
                       s.req.stop_token_ids.end();
  const int max_context = group_ ? group_->model_info().max_context : 0;
  const bool length =
      completion >= s.req.max_tokens ||
      (max_context > 0 && static_cast<int>(s.req.prompt.size()) + completion >= max_context);
  if (stop_id || length) {
    s.pending_text += s.decoder->Flush();
    emit(s.pending_text.size());
    FinishSequence(s, stop_id ? FinishReason::kStop : FinishReason::kLength, absl::OkStatus(),
                   events);
    return;
  }
  size_t keep = s.max_stop_len > 0 ? s.max_stop_len - 1 : 0;
  size_t n = s.pending_text.size() > keep ? s.pending_text.size() - keep : 0;
  emit(Utf8SafePrefix(s.pending_text, n));
}

PlannedStep SchedulerCore::PlanStep(SinkEvents* events) {
  PlannedStep step;
  if (group_ == nullptr) return step;
  step.group = group_;
  step.epoch = group_epoch_;
  // Aborted requests end; queued ones that can no longer fit the budget (it follows the
  // group's capacity) fail rather than wait forever.
  for (auto& s : active_) {
    if (s->cancel) FinishSequence(*s, FinishReason::kAbort, absl::OkStatus(), events);
  }
  RemoveFinished();
  for (auto it = queue_.begin(); it != queue_.end();) {
    Sequence& s = **it;
    if (s.cancel) {
      FinishSequence(s, FinishReason::kAbort, absl::OkStatus(), events);
    } else if (s.reservation > options_.kv_budget_tokens) {
      FinishSequence(s, FinishReason::kError,
                     absl::ResourceExhaustedError(absl::StrCat(
                         "request needs ", s.reservation, " KV tokens; the workers' KV budget is ",
                         options_.kv_budget_tokens)),
                     events);
    }
    it = s.finished ? queue_.erase(it) : std::next(it);
  }
  while (!queue_.empty() && static_cast<int>(active_.size()) < options_.max_batch &&
         kv_reserved_ + queue_.front()->reservation <= options_.kv_budget_tokens) {
    std::unique_ptr<Sequence> s = std::move(queue_.front());
    queue_.pop_front();
    s->admitted = Clock::now();
    s->epoch = group_epoch_;
    s->tokenizer = tokenizer_;
    s->decoder = std::make_unique<IncrementalDecoder>(*s->tokenizer);
    kv_reserved_ += s->reservation;
    active_.push_back(std::move(s));
  }

  step.plan.release.swap(pending_release_);
  int prefill_budget = options_.chunk_tokens;
  for (auto& sp : active_) {
    Sequence& s = *sp;
    WorkItem item;
    item.seq_id = s.seq_id;
    item.start_pos = s.kv_len;
    item.sampling = s.req.sampling;
    item.sample_index = s.generated.size();
    item.mask_refresh_interval = s.req.hip_mask_refresh_interval;
    item.hip_k = s.req.hip_k;
    item.reserve_tokens = s.reservation;
    const int prompt_len = static_cast<int>(s.req.prompt.size());
    // Resuming on a new group: the history (prompt, then every generated token) is the
    // prompt; its last sample continues the RNG stream at sample_index = generated.size().
    const int target = s.history_len > 0 ? s.history_len : prompt_len;
    if (s.prefilled < target) {
      if (prefill_budget <= 0) continue;
      int n = std::min(target - s.prefilled, prefill_budget);
      if (n < target - s.prefilled && options_.chunk_tokens >= 2 * kPrefillCutAlign) {
        // Not the last chunk: end it on a multiple of kPrefillCutAlign that leaves at least
        // kPrefillCutAlign tokens to the last one, so that HiP's query blocks and its tail
        // queries (worker/hip_attention.h HipStepInfo::tail) see the same queries however the
        // budget splits the prompt (outputs then do not depend on what else is batched).
        // With the whole budget free this still advances by >= kPrefillCutAlign tokens.
        const int end = std::min((s.prefilled + n) / kPrefillCutAlign,
                                 (target - kPrefillCutAlign) / kPrefillCutAlign) *
                        kPrefillCutAlign;
        n = end - s.prefilled;
        if (n <= 0) continue;  // too little budget left in this step for an aligned cut
      }
      prefill_budget -= n;
      item.tokens.reserve(n);
      for (int i = s.prefilled; i < s.prefilled + n; ++i) {
        item.tokens.push_back(i < prompt_len ? s.req.prompt[i] : s.generated[i - prompt_len]);
      }
      item.sample = s.prefilled + n == target;
    } else {
      item.tokens = {s.generated.back()};
      item.sample = true;
    }
    step.plan.work.push_back(std::move(item));
  }
  return step;
}

void SchedulerCore::ApplyResult(const PlannedStep& step, const StepOutcome& outcome,
                                SinkEvents* events) {
  // Reconfigured meanwhile (or never planned): the sequences already failed.
  if (step.group == nullptr || step.epoch != group_epoch_) return;
  absl::flat_hash_map<SequenceId, Sequence*> planned;
  for (auto& s : active_) planned[s->seq_id] = s.get();
  std::vector<Sequence*> in_plan;  // parallel to step.plan.work; null when gone
  for (const WorkItem& item : step.plan.work) {
    auto it = planned.find(item.seq_id);
    in_plan.push_back(it == planned.end() ? nullptr : it->second);
  }
  const absl::Status& status = outcome.status;
  if (!status.ok()) {
    if (absl::IsUnavailable(status) || !step.group->healthy()) {
      LOG(ERROR) << "worker group failed: " << status;
      LoseGroup(absl::UnavailableError(absl::StrCat("worker group failed: ", status.message())),
                events);
      return;
    }
    // The step was rejected as a whole and no KV changed. Fail the sequence it names (or
    // all of them when it names none, or one that is not in the step) and let the rest retry.
    if (outcome.failed_seq) {
      LOG(WARNING) << "step rejected for sequence " << *outcome.failed_seq << ": " << status;
    } else {
      LOG(WARNING) << "step rejected: " << status;
    }
    Sequence* named = nullptr;
    if (outcome.failed_seq) {
      for (Sequence* s : in_plan) {
        if (s != nullptr && s->seq_id == *outcome.failed_seq) named = s;
      }
    }
    if (named != nullptr) {
      FinishSequence(*named, FinishReason::kError, status, events);
    } else {
      for (Sequence* s : in_plan) {
        if (s != nullptr) FinishSequence(*s, FinishReason::kError, status, events);
      }
    }
    RemoveFinished();
    return;
  }
  ++steps_;
  absl::flat_hash_map<SequenceId, int32_t> sampled;
  for (const StepToken& t : outcome.tokens) sampled[t.seq_id] = t.token;
  for (size_t i = 0; i < in_plan.size(); ++i) {
    if (in_plan[i] == nullptr) continue;
    Sequence& s = *in_plan[i];
    const WorkItem& item = step.plan.work[i];
    s.sent_any = true;
    s.kv_len += static_cast<int>(item.tokens.size());
    const int prompt_len = static_cast<int>(s.req.prompt.size());
    const int target = s.history_len > 0 ? s.history_len : prompt_len;
    if (s.prefilled < target) {
      s.prefilled += static_cast<int>(item.tokens.size());
      // Prompt tokens done; a re-prefill after recovery reports only progress past what the
      // client has already seen.
      const int done = std::min(s.prefilled, prompt_len);
      if (s.req.report_prefill_progress && done > s.progress_reported) {
        s.progress_reported = done;
        SinkEvent e;
        e.kind = SinkEvent::Kind::kPrefillProgress;
        e.sink = s.req.sink;
        e.request_id = s.req.request_id;
        e.processed = done;
        e.total = prompt_len;
        events->push_back(std::move(e));
      }
    }
    if (s.finished) continue;
    if (item.sample) {
      auto it = sampled.find(s.seq_id);
      if (it == sampled.end()) {
        FinishSequence(s, FinishReason::kError,
                       absl::InternalError("worker returned no token for the sequence"), events);
        continue;
      }
      OnToken(s, it->second, events);
    }
  }
  RemoveFinished();
}

// ---------------------------------------------------------------------------------------------
// Scheduler

Scheduler::Scheduler(const SchedulerOptions& options)
    : core_(options), heartbeat_s_(options.heartbeat_s), thread_([this] { Loop(); }) {}

Scheduler::~Scheduler() { Stop(); }

void Scheduler::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
  std::unique_lock<std::mutex> lock(mu_);
  loop_ended_ = true;
  core_.FailAll(absl::UnavailableError("server is shutting down"), &outbox_);
  FlushLocked(lock);
}

void Scheduler::FlushLocked(std::unique_lock<std::mutex>& lock) {
  if (outbox_.empty()) return;
  if (!loop_ended_) {
    cv_.notify_all();  // the loop thread delivers, keeping each request's events in order
    return;
  }
  SinkEvents events;
  events.swap(outbox_);
  lock.unlock();
  DeliverObserved(events);
  lock.lock();
}

void Scheduler::DeliverObserved(const SinkEvents& events) {
  if (SchedulerObserver* o = observer_.load()) o->OnEvents(events);
  Deliver(events);
}

void Scheduler::FailAll(const absl::Status& status) {
  std::unique_lock<std::mutex> lock(mu_);
  core_.FailAll(status, &outbox_);
  cv_.notify_all();
  FlushLocked(lock);
}

void Scheduler::SetWorkerGroup(std::shared_ptr<WorkerGroup> group,
                               std::shared_ptr<const Tokenizer> tok) {
  std::unique_lock<std::mutex> lock(mu_);
  core_.SetWorkerGroup(std::move(group), std::move(tok), &outbox_);
  cv_.notify_all();
  FlushLocked(lock);
}

absl::Status Scheduler::Submit(SequenceRequest request) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return absl::UnavailableError("server is shutting down");
  RETURN_IF_ERROR(core_.Submit(std::move(request)));
  cv_.notify_all();
  return absl::OkStatus();
}

int Scheduler::Abort(const std::vector<std::string>& ids) {
  std::unique_lock<std::mutex> lock(mu_);
  const int found = core_.Abort(ids, &outbox_);
  if (found > 0) cv_.notify_all();
  FlushLocked(lock);
  return found;
}

SchedulerStats Scheduler::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return core_.Stats();
}

void Scheduler::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  Clock::time_point last_step = Clock::now();
  const auto heartbeat = std::chrono::milliseconds(static_cast<int64_t>(heartbeat_s_ * 1000));
  // Delivers what is in the outbox with the lock released.
  auto deliver = [&] {
    if (outbox_.empty()) return;
    SinkEvents events;
    events.swap(outbox_);
    lock.unlock();
    DeliverObserved(events);
    lock.lock();
  };
  while (true) {
    // Wakes for work, the heartbeat, or the end of a recovery wait.
    Clock::time_point wake = Clock::now() + heartbeat;
    if (std::optional<Clock::time_point> d = core_.recovery_deadline(); d && *d < wake) wake = *d;
    cv_.wait_until(lock, wake, [&] { return stopping_ || !outbox_.empty() || core_.HasWork(); });
    if (stopping_) return;  // Stop delivers what is left
    core_.ExpireRecovery(Clock::now(), &outbox_);
    PlannedStep step = core_.PlanStep(&outbox_);
    if (step.group == nullptr || (step.idle() && Clock::now() - last_step < heartbeat)) {
      deliver();
      continue;
    }
    SinkEvents events;
    events.swap(outbox_);
    lock.unlock();
    DeliverObserved(events);
    const Clock::time_point step_start = Clock::now();
    StepOutcome outcome = step.group->Step(step.plan);
    if (SchedulerObserver* o = observer_.load(); o != nullptr && !step.idle()) {
      o->OnStep(Seconds(Clock::now() - step_start), outcome.status.ok(), outcome.cache);
    }
    lock.lock();
    last_step = Clock::now();
    core_.ApplyResult(step, outcome, &outbox_);
    deliver();
  }
}

}  // namespace hipserve::coordinator
