#include "worker/worker_state.h"

#include <cstdlib>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "worker/builtin_model.h"
#include "worker/gloo_communicator.h"
#include "worker/hip_config.h"
#include "worker/model_source.h"
#include "worker/nccl_communicator.h"

namespace hipserve::worker {

namespace control = v1::control;

absl::StatusOr<control::ConfigureResponse> WorkerState::Configure(
    const control::ConfigureRequest& req) {
  if (req.world_size() <= 0 || req.rank() < 0 || req.rank() >= req.world_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", req.rank(), " outside world of ", req.world_size()));
  }
  if (req.rank() != options_.rank) {
    return absl::InvalidArgumentError(
        absl::StrCat("configure for rank ", req.rank(), " sent to worker rank ", options_.rank));
  }
  if (options_.backend != "cpu" && options_.backend != "cuda") {
    return absl::InvalidArgumentError(
        absl::StrCat("backend '", options_.backend, "' is unknown; use 'cpu' or 'cuda'"));
  }
  // The old model borrows the old communicator: drop both before building the new ones.
  model_.reset();
  reported_cache_ = CacheCounters{};  // the new model's counters start at 0
  comm_.reset();
  comm_kind_.clear();
  ASSIGN_OR_RETURN(LoadedSource source, LoadModelSource(req.model(), req.seed()));
  const int kv_heads = source.weights.dims.num_kv_heads;
  if (kv_heads % req.world_size() != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor-parallel degree ", req.world_size(), " does not divide the ", kv_heads,
        " KV heads of ", source.weights.dims.name, " (use a --tp that divides ", kv_heads, ")"));
  }
  // Shard before joining the peers: a model that cannot be split fails every rank at once.
  ASSIGN_OR_RETURN(ModelWeights shard,
                   ShardWeights(std::move(source.weights), req.rank(), req.world_size()));
  ASSIGN_OR_RETURN(comm_, MakeCommunicator(req));
  ModelOptions mo;
  mo.attention = req.attention().empty() ? "dense" : req.attention();
  // Empty = HIP.md defaults; bad JSON fails Configure with the key named (also under dense).
  ASSIGN_OR_RETURN(mo.hip, ParseHipConfig(req.hip_config_json()));
  mo.max_context = req.max_context();
  mo.backend = options_.backend;
  mo.cuda.gpu_memory_bytes = options_.gpu_memory_bytes;
  mo.cuda.device = options_.device;
  mo.cuda.kv_offload = options_.kv_offload;
  // Steps carry up to the scheduler's chunk + one token per batched sequence: workspaces for
  // that many rows (a step above it would be refused).
  if (req.max_step_tokens() > 0) mo.cuda.max_step_rows = req.max_step_tokens();
  ASSIGN_OR_RETURN(mo.cuda.kv_dtype, ParseKvDtype(options_.kv_dtype));
  ASSIGN_OR_RETURN(mo.cpu_weights, ParseCpuWeights(options_.cpu_weights));
  const int64_t host_bytes =
      options_.host_kv_bytes > 0 ? options_.host_kv_bytes : req.host_kv_bytes();
  const int64_t gpu_bytes = options_.gpu_kv_bytes > 0 ? options_.gpu_kv_bytes : req.gpu_kv_bytes();
  mo.cuda.host_kv_bytes = host_bytes;  // the offloaded KV's host tier (CUDA, --kv_offload)
  mo.cuda.gpu_kv_bytes = gpu_bytes;
  if (mo.backend == "cuda" && gpu_bytes > 0) {
    // K and V for every layer and local KV head, in GPU memory (bf16, or fp8 with --kv_dtype).
    const int64_t per_token = GpuKvPoolBytesPerToken(shard.dims.num_layers, shard.local_kv_heads(),
                                                     shard.dims.head_dim, mo.cuda.kv_dtype);
    mo.kv_budget_tokens = gpu_bytes / per_token;
    if (mo.kv_budget_tokens < 1) {
      return absl::InvalidArgumentError(absl::StrCat("GPU KV budget of ", gpu_bytes,
                                                     " bytes holds no token of this model (",
                                                     per_token, " bytes per token)"));
    }
  } else if (mo.backend == "cpu" && host_bytes > 0) {
    // fp32 K and V for every layer and local KV head.
    const int64_t per_token = int64_t{shard.dims.num_layers} * shard.local_kv_heads() *
                              shard.dims.head_dim * 2 * static_cast<int64_t>(sizeof(float));
    mo.kv_budget_tokens = host_bytes / per_token;
    if (mo.kv_budget_tokens < 1) {
      return absl::InvalidArgumentError(absl::StrCat("host KV budget of ", host_bytes,
                                                     " bytes holds no token of this model (",
                                                     per_token, " bytes per token)"));
    }
  }
  ASSIGN_OR_RETURN(model_, Model::Create(std::move(shard), comm_.get(), mo));
  const ModelDims& d = model_->dims();
  control::ConfigureResponse resp;
  resp.set_model_name(d.name);
  resp.set_vocab_size(d.vocab_size);
  resp.set_max_context(model_->max_context());
  resp.set_num_layers(d.num_layers);
  resp.set_hidden_size(d.hidden);
  resp.set_num_heads(d.num_heads);
  resp.set_num_kv_heads(d.num_kv_heads);
  resp.set_head_dim(d.head_dim);
  // Weights' storage (CPU: fp32 or bf16, fp32 activations and KV; CUDA: bf16 throughout).
  resp.set_dtype(model_->dtype_name());
  resp.set_backend(options_.backend);
  resp.set_kv_capacity_tokens(model_->kv_capacity_tokens());
  const MemoryPlan plan = model_->memory_plan();
  control::WorkerMemoryPlan* mp = resp.mutable_memory_plan();
  mp->set_device(plan.device);
  mp->set_budget_bytes(plan.budget_bytes);
  mp->set_weights_bytes(plan.weights_bytes);
  mp->set_workspace_bytes(plan.workspace_bytes);
  mp->set_kv_bytes(plan.kv_bytes);
  mp->set_kv_tokens(plan.kv_tokens);
  mp->set_host_kv_bytes(plan.host_kv_bytes);
  mp->set_gpu_kv_tokens(plan.gpu_kv_tokens);
  mp->set_kv_dtype(plan.kv_dtype);
  *resp.mutable_tokenizer() = std::move(source.tokenizer);
  LOG(INFO) << "configured " << d.name << ": " << d.num_layers << " layers, hidden " << d.hidden
            << ", vocab " << d.vocab_size << ", max context " << model_->max_context()
            << ", backend " << model_->backend_name() << ", weights " << model_->dtype_name()
            << ", KV " << plan.kv_dtype << ", rank " << req.rank() << " of " << req.world_size()
            << " (" << comm_kind_ << " communicator)";
  return resp;
}

absl::StatusOr<std::unique_ptr<Communicator>> WorkerState::MakeCommunicator(
    const control::ConfigureRequest& req) {
  const char* env = std::getenv("HIPSERVE_FORCE_NCCL");
  const bool force_nccl = options_.force_nccl || (env != nullptr && std::string(env) == "1");
  const bool nccl = options_.backend == "cuda" && (req.world_size() > 1 || force_nccl);
  if (req.world_size() == 1 && !nccl) {
    comm_kind_ = "local";
    return MakeLocalCommunicator();
  }
  if (options_.coordinator.empty() || req.comm_bootstrap().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "world size ", req.world_size(), " needs a rendezvous through the coordinator, but ",
        options_.coordinator.empty() ? "this worker has no coordinator address"
                                     : "Configure carried no comm_bootstrap prefix"));
  }
  std::shared_ptr<RendezvousStore> store =
      MakeCoordinatorStore(options_.coordinator, req.comm_bootstrap());
  const absl::Duration timeout = absl::Seconds(options_.collective_timeout_s);
  const absl::Duration rendezvous = absl::Seconds(options_.rendezvous_timeout_s);
  if (nccl) {
    NcclOptions o;
    o.rank = req.rank();
    o.world_size = req.world_size();
    o.timeout = timeout;
    o.rendezvous_timeout = rendezvous;
    comm_kind_ = "nccl";
    return MakeNcclCommunicator(o, std::move(store));
  }
  GlooOptions o;
  o.rank = req.rank();
  o.world_size = req.world_size();
  o.hostname = options_.comm_host;
  o.timeout = timeout;
  o.rendezvous_timeout = rendezvous;
  comm_kind_ = "gloo";
  return MakeGlooCommunicator(o, std::move(store));
}

control::StepResult WorkerState::Step(const control::StepRequest& req) {
  control::StepResult result;
  result.set_step_id(req.step_id());
  if (req.heartbeat()) return result;
  if (model_ == nullptr) {
    result.set_error("worker is not configured");
    result.set_error_code(static_cast<int>(absl::StatusCode::kFailedPrecondition));
    return result;
  }
  StepBatch batch;
  for (uint64_t id : req.release_seq_ids()) batch.release.push_back(SequenceId(id));
  for (const control::SeqWork& w : req.work()) {
    SeqStep s;
    s.seq = SequenceId(w.seq_id());
    s.tokens.assign(w.tokens().begin(), w.tokens().end());
    s.start_pos = w.start_pos();
    s.sample = w.sample();
    s.sampling.temperature = w.sampling().temperature();
    s.sampling.top_p = w.sampling().top_p();
    s.sampling.top_k = w.sampling().top_k();
    s.sampling.seed = w.sampling().seed();
    s.sampling.sample_index = w.sample_index();
    s.mask_refresh_interval.assign(w.mask_refresh_interval().begin(),
                                   w.mask_refresh_interval().end());
    s.hip_k = w.hip_k();
    s.reserve_tokens = w.reserve_tokens();
    batch.work.push_back(std::move(s));
  }
  ++steps_;
  absl::StatusOr<std::vector<SampledToken>> out = model_->Step(batch);
  {
    // Lookups since the previous StepResult: the coordinator sums them into its counters.
    const CacheCounters now = model_->cache_counters();
    control::CacheCounts* c = result.mutable_cache();
    c->set_hip_mask_hits(now.hip_mask_hits - reported_cache_.hip_mask_hits);
    c->set_hip_mask_misses(now.hip_mask_misses - reported_cache_.hip_mask_misses);
    c->set_kv_hot_page_hits(now.kv_hot_page_hits - reported_cache_.kv_hot_page_hits);
    c->set_kv_hot_page_misses(now.kv_hot_page_misses - reported_cache_.kv_hot_page_misses);
    reported_cache_ = now;
  }
  if (!out.ok()) {
    result.set_error(std::string(out.status().message()));
    result.set_error_code(static_cast<int>(out.status().code()));
    if (std::optional<SequenceId> failed = model_->last_failed_sequence()) {
      result.set_failed_seq_id(failed->value());
    }
    // The communicators report a dead or stalled peer as Unavailable / DeadlineExceeded and
    // stay broken; so does a lost device. Nothing but a new Configure recovers from those.
    if (comm_kind_ != "local" &&
        (absl::IsUnavailable(out.status()) || absl::IsDeadlineExceeded(out.status()))) {
      result.set_group_broken(true);
    }
    return result;
  }
  for (const SampledToken& t : *out) {
    control::SeqOutput* o = result.add_outputs();
    o->set_seq_id(t.seq.value());
    o->set_token(t.token);
    o->set_logprob(t.logprob);
  }
  return result;
}

absl::Status WorkerState::Release(const control::ReleaseRequest& req) {
  if (model_ == nullptr) return absl::FailedPreconditionError("worker is not configured");
  for (uint64_t id : req.seq_ids()) {
    absl::Status s = model_->Release(SequenceId(id));
    if (!s.ok() && !absl::IsNotFound(s)) return s;
  }
  return absl::OkStatus();
}

control::StatsResponse WorkerState::Stats() const {
  control::StatsResponse r;
  r.set_steps(steps_);
  r.set_instance_id(options_.instance_id);
  if (model_ != nullptr) {
    r.set_kv_tokens(model_->kv_tokens());
    r.set_sequences(model_->num_sequences());
    const CacheCounters c = model_->cache_counters();
    r.mutable_cache()->set_hip_mask_hits(c.hip_mask_hits);
    r.mutable_cache()->set_hip_mask_misses(c.hip_mask_misses);
    r.mutable_cache()->set_kv_hot_page_hits(c.kv_hot_page_hits);
    r.mutable_cache()->set_kv_hot_page_misses(c.kv_hot_page_misses);
  }
  return r;
}

void WorkerState::Reset() {
  if (model_ == nullptr) return;
  model_->ReleaseAll();
}

}  // namespace hipserve::worker
