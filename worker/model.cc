#include "worker/model.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "worker/cpu_backend.h"
#include "worker/cuda_backend.h"

namespace hipserve::worker {

absl::StatusOr<kernels::CpuWeightType> ParseCpuWeights(const std::string& name) {
  if (name == "fp32") return kernels::CpuWeightType::kFloat32;
  if (name == "bf16") return kernels::CpuWeightType::kBf16;
  return absl::InvalidArgumentError(
      absl::StrCat("cpu weights '", name, "' are unknown; use 'fp32' or 'bf16'"));
}

absl::Status CheckKvOffload(const std::string& value) {
  if (value == "auto" || value == "on" || value == "off") return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("--kv_offload must be 'auto', 'on' or 'off', got '", value, "'"));
}

absl::StatusOr<kernels::KvDtype> ParseKvDtype(const std::string& value) {
  if (value == "bf16") return kernels::KvDtype::kBf16;
  if (value == "fp8") return kernels::KvDtype::kFp8E5m2;
  return absl::InvalidArgumentError(
      absl::StrCat("--kv_dtype must be 'bf16' or 'fp8', got '", value, "'"));
}

int64_t GpuKvPoolBytesPerToken(int num_layers, int local_kv_heads, int head_dim,
                               kernels::KvDtype dtype) {
  return int64_t{num_layers} * local_kv_heads * head_dim * 2 * kernels::KvDtypeBytes(dtype);
}

absl::StatusOr<std::unique_ptr<Model>> Model::Create(ModelWeights w, Communicator* comm,
                                                     const ModelOptions& options) {
  if (comm == nullptr) return absl::InvalidArgumentError("Model needs a communicator");
  if (comm->world_size() != w.world_size || comm->rank() != w.rank) {
    return absl::InvalidArgumentError(absl::StrCat("weights are for rank ", w.rank, "/",
                                                   w.world_size, ", communicator is rank ",
                                                   comm->rank(), "/", comm->world_size()));
  }
  if (options.attention != "dense" && options.attention != "hip") {
    return absl::InvalidArgumentError(
        absl::StrCat("attention mode '", options.attention, "' is unknown; use 'dense' or 'hip'"));
  }
  ModelWeights header;  // everything but the tensors, kept by the Model
  header.dims = w.dims;
  header.rank = w.rank;
  header.world_size = w.world_size;
  header.vocab_begin = w.vocab_begin;
  header.vocab_end = w.vocab_end;
  std::unique_ptr<ForwardBackend> backend;
  if (options.backend == "cpu") {
    if (options.cuda.kv_dtype != kernels::KvDtype::kBf16) {
      // The CPU backend has its own KV store (fp32, kvstore::SimpleKvStore): the flag of the
      // CUDA pool does not apply; said once here rather than refused, so that one command line
      // serves with --backend=auto on machines with and without a GPU.
      LOG(INFO) << "--kv_dtype=fp8 applies to the CUDA backend only; the CPU backend keeps its KV "
                   "in fp32";
    }
    ASSIGN_OR_RETURN(backend, MakeCpuBackend(std::move(w), options));
  } else if (options.backend == "cuda") {
    ASSIGN_OR_RETURN(backend, MakeCudaBackend(std::move(w), options));
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("backend '", options.backend, "' is unknown; use 'cpu' or 'cuda'"));
  }
  return std::unique_ptr<Model>(new Model(header, comm, options, std::move(backend)));
}

Model::Model(const ModelWeights& w, Communicator* comm, const ModelOptions& options,
             std::unique_ptr<ForwardBackend> backend)
    : dims_(w.dims),
      rank_(w.rank),
      world_size_(w.world_size),
      vocab_begin_(w.vocab_begin),
      vocab_end_(w.vocab_end),
      comm_(comm),
      options_(options),
      backend_(std::move(backend)) {
  max_context_ = options_.max_context > 0 ? options_.max_context : dims_.max_context;
}

absl::Status Model::Release(SequenceId seq) {
  RETURN_IF_ERROR(backend_->Free(seq));
  live_.erase(seq);
  return absl::OkStatus();
}

void Model::ReleaseAll() {
  for (SequenceId seq : live_) backend_->Free(seq).IgnoreError();
  live_.clear();
}

absl::Status Model::Validate(const StepBatch& batch, std::optional<SequenceId>* failed) const {
  absl::flat_hash_set<SequenceId> seen;
  for (const SeqStep& s : batch.work) {
    *failed = s.seq;
    const std::string who = absl::StrCat("sequence ", s.seq.value(), ": ");
    if (!seen.insert(s.seq).second) {
      return absl::InvalidArgumentError(who + "appears twice in one step");
    }
    if (s.tokens.empty()) return absl::InvalidArgumentError(who + "no tokens");
    for (int32_t t : s.tokens) {
      if (t < 0 || t >= dims_.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat(
            who, "token id ", t, " outside the vocabulary [0, ", dims_.vocab_size, ")"));
      }
    }
    if (!s.mask_refresh_interval.empty()) {
      if (options_.attention != "hip") {
        return absl::InvalidArgumentError(
            who + "mask_refresh_interval is a HiP setting, but this worker runs '" +
            options_.attention + "' attention");
      }
      if (static_cast<int>(s.mask_refresh_interval.size()) != options_.hip.num_stages()) {
        return absl::InvalidArgumentError(
            absl::StrCat(who, "mask_refresh_interval has ", s.mask_refresh_interval.size(),
                         " values; the HiP config has ", options_.hip.num_stages(), " stages"));
      }
      for (int v : s.mask_refresh_interval) {
        if (v <= 0) {
          return absl::InvalidArgumentError(
              absl::StrCat(who, "mask_refresh_interval values must be > 0, got ", v));
        }
      }
    }
    if (s.hip_k != 0) {
      if (options_.attention != "hip") {
        return absl::InvalidArgumentError(who + "hip_k is a HiP setting, but this worker runs '" +
                                          options_.attention + "' attention");
      }
      const int block = options_.hip.block_size();
      const int max_k = MaxRequestK(options_.hip, max_context_);
      if (s.hip_k < 0 || s.hip_k % block != 0 || s.hip_k > max_k) {
        return absl::InvalidArgumentError(absl::StrCat(
            who, "hip_k = ", s.hip_k, " must be a positive multiple of the block size ", block,
            " and at most ", max_k));
      }
    }
    if (s.reserve_tokens < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(who, "reserve_tokens must be >= 0, got ", s.reserve_tokens));
    }
    const bool released =
        std::find(batch.release.begin(), batch.release.end(), s.seq) != batch.release.end();
    int64_t have = 0;
    if (!released && backend_->Contains(s.seq)) {
      ASSIGN_OR_RETURN(have, backend_->Length(s.seq));
    }
    if (s.start_pos != have) {
      return absl::FailedPreconditionError(absl::StrCat(
          who, "step starts at position ", s.start_pos, " but the KV holds ", have, " tokens"));
    }
    if (have + static_cast<int64_t>(s.tokens.size()) > max_context_) {
      return absl::InvalidArgumentError(absl::StrCat(
          who, have + s.tokens.size(), " tokens exceed the maximum context ", max_context_));
    }
  }
  failed->reset();
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SampledToken>> Model::Step(const StepBatch& batch) {
  last_failed_.reset();
  for (SequenceId seq : batch.release) {
    if (backend_->Contains(seq)) RETURN_IF_ERROR(Release(seq));
  }
  return RunStep(batch, /*all_logits=*/false, nullptr);
}

absl::StatusOr<std::vector<SampledToken>> Model::RunStep(const StepBatch& batch, bool all_logits,
                                                         std::vector<float>* logits_out) {
  RETURN_IF_ERROR(Validate(batch, &last_failed_));
  // Remember lengths so that a failure rolls every sequence back.
  std::vector<std::pair<SequenceId, int64_t>> before;
  for (const SeqStep& s : batch.work) {
    if (!backend_->Contains(s.seq)) {
      RETURN_IF_ERROR(backend_->AddSequence(s.seq));
      live_.insert(s.seq);
      before.emplace_back(s.seq, -1);
    } else {
      before.emplace_back(s.seq, s.start_pos);
    }
  }
  std::vector<SequenceId> seqs;
  for (const SeqStep& s : batch.work) seqs.push_back(s.seq);
  std::unique_ptr<BackendCheckpoint> checkpoint = backend_->Save(seqs);
  std::vector<SampledToken> out;
  absl::Status status = Forward(batch, all_logits, &out, logits_out);
  if (!status.ok()) {
    backend_->Restore(*checkpoint);
    for (const auto& [seq, len] : before) {
      if (len < 0) {
        backend_->Free(seq).IgnoreError();
        live_.erase(seq);
      } else {
        backend_->Truncate(seq, len).IgnoreError();
      }
    }
    return status;
  }
  return out;
}

absl::Status Model::Forward(const StepBatch& batch, bool all_logits,
                            std::vector<SampledToken>* sampled, std::vector<float>* logits_out) {
  StepLayout layout;
  for (const SeqStep& s : batch.work) {
    StepLayout::Item it;
    it.seq = s.seq;
    it.row = layout.rows();
    it.tokens = static_cast<int>(s.tokens.size());
    it.start_pos = s.start_pos;
    it.mask_refresh_interval = s.mask_refresh_interval;
    it.hip_k = s.hip_k;
    it.reserve_tokens = s.reserve_tokens;
    it.ends_prompt = all_logits || s.sample;
    layout.items.push_back(it);
    layout.ids.insert(layout.ids.end(), s.tokens.begin(), s.tokens.end());
    for (int i = 0; i < it.tokens; ++i) layout.positions.push_back(s.start_pos + i);
    if (all_logits) {
      for (int i = 0; i < it.tokens; ++i) layout.logit_rows.push_back(it.row + i);
    } else if (s.sample) {
      layout.logit_rows.push_back(it.row + it.tokens - 1);
    }
  }
  if (layout.rows() == 0) return absl::OkStatus();
  // Each rank computes its vocab shard, padded to an equal width so AllGather can stack them.
  const int shard = (dims_.vocab_size + world_size_ - 1) / world_size_;
  ASSIGN_OR_RETURN(StepBuffers b, backend_->BeginStep(layout, world_size_, shard));
  ForwardBackend& be = *backend_;
  RETURN_IF_ERROR(be.Embed(b.x));
  RETURN_IF_ERROR(AllReduce(b.x));  // vocab-sharded rows
  for (int li = 0; li < dims_.num_layers; ++li) {
    if (li == 0) {
      RETURN_IF_ERROR(be.RmsNorm(b.x, li, NormId::kAttn, b.norm));
    } else {  // the previous layer's MLP output joins the residual here
      RETURN_IF_ERROR(be.AddRmsNorm(b.x, b.proj, li, NormId::kAttn, b.norm));
    }
    RETURN_IF_ERROR(be.LinearQkv(b.norm, li, b.q, b.k, b.v));
    RETURN_IF_ERROR(be.Attention(li, b.q, b.k, b.v, b.attn));
    RETURN_IF_ERROR(be.Linear(b.attn, li, LinearId::kWo, b.proj));
    RETURN_IF_ERROR(AllReduce(b.proj));
    RETURN_IF_ERROR(be.AddRmsNorm(b.x, b.proj, li, NormId::kFfn, b.norm));
    RETURN_IF_ERROR(be.MlpGateUp(b.norm, li, b.gate, b.up));
    RETURN_IF_ERROR(be.Linear(b.gate, li, LinearId::kDown, b.proj));
    RETURN_IF_ERROR(AllReduce(b.proj));
  }
  RETURN_IF_ERROR(be.AddRmsNorm(b.x, b.proj, 0, NormId::kOutput, b.norm));
  if (layout.logit_rows.empty()) return be.Finish();
  RETURN_IF_ERROR(be.LmHead(b.norm, b.logits));
  std::vector<kernels::SamplingOptions> options;
  std::vector<SequenceId> seqs;
  for (const SeqStep& s : batch.work) {
    if (!s.sample) continue;
    options.push_back(s.sampling);
    seqs.push_back(s.seq);
  }
  std::vector<kernels::SampleResult> r;
  if (world_size_ > 1 && logits_out == nullptr) {
    // Only the shards' candidates travel (whole rows only where they can't settle a row).
    RETURN_IF_ERROR(SampleSharded(b, options, &r));
    if (rank_ != 0) return be.Finish();
  } else {
    RETURN_IF_ERROR(comm_->AllGather(b.logits.data, b.logits.numel(), b.logits.dtype,
                                     b.gathered.data, be.stream()));
    if (rank_ != 0) return be.Finish();
    if (logits_out != nullptr) {
      ASSIGN_OR_RETURN(*logits_out, be.ReadLogits(b.gathered, world_size_, dims_.vocab_size));
      return be.Finish();
    }
    ASSIGN_OR_RETURN(r, be.Sample(b.gathered, world_size_, dims_.vocab_size, options));
  }
  RETURN_IF_ERROR(be.Finish());
  for (size_t i = 0; i < r.size(); ++i) {
    sampled->push_back(SampledToken{seqs[i], r[i].token, r[i].logprob});
  }
  return absl::OkStatus();
}

}  // namespace hipserve::worker
