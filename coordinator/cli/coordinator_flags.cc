#include "coordinator/cli/coordinator_flags.h"

#include <cstdio>
#include <fstream>

namespace hipserve::cli {

void AddCoordinatorFlags(FlagSet& f, coordinator::CoordinatorOptions* o) {
  f.String("model", &o->model,
           "Model to serve: 'default' (SmolLM2-135M-Instruct, fetched by scripts/fetch-model.sh), "
           "'builtin:tiny' (seeded random tiny Llama), 'random:llama-3.1-8b' (Llama-3.1-8B's shape "
           "and RoPE, seeded random weights, byte-level tokenizer; ~32 GB RAM; also "
           "random:llama-3.1-8b-2l, random:tiny-llama3), a .gguf file or a Hugging Face "
           "directory.");
  f.String("host", &o->host, "Address the public gRPC API binds to.");
  f.Int("port", &o->port, "Public gRPC port (0 = pick a free one; see --port_file).");
  f.String("attention", &o->attention, "Default attention: 'dense' or 'hip'.");
  f.String("hip_config", &o->hip_config_json,
           "HiP parameters as JSON, e.g. '{\"mask_refresh_interval\":[96,24,8]}'.");
  f.Int("max_context", &o->max_context, "Longest sequence (prompt + output); 0 = the model's.");
  f.Uint64("seed", &o->seed, "Seed of the builtin model's weights (0 = default).");
  f.Bytes("gpu_kv_bytes", &o->gpu_kv_bytes, "GPU KV budget per worker (e.g. 40GiB); 0 = default.");
  f.Bytes("host_kv_bytes", &o->host_kv_bytes,
          "Host KV budget per worker (the CPU backend keeps all KV there): a hard limit, "
          "never guessed from free memory; divide a pod's memory by its ranks.");
  f.Int("default_max_tokens", &o->default_max_tokens,
        "max_tokens used when a request does not set it.");
  f.Int("max_tokens_limit", &o->max_tokens_limit, "Largest max_tokens a request may ask for.");
  f.Int("max_prompt_tokens", &o->max_prompt_tokens, "Longest prompt accepted, in tokens.");
  f.Int("max_batch", &o->scheduler.max_batch, "Sequences batched into one step.");
  f.Int("chunk", &o->scheduler.chunk_tokens, "Prefill tokens per step (chunked prefill).");
  f.Int("max_queue", &o->scheduler.max_queue,
        "Requests allowed to wait; more get RESOURCE_EXHAUSTED.");
  f.Double("configure_timeout_s", &o->configure_timeout_s,
           "How long a worker may take to load the model and connect.");
  f.Double("step_timeout_s", &o->step_timeout_s,
           "Longest a step may take before its workers count as lost (readiness then goes "
           "NOT_SERVING and running requests fail with UNAVAILABLE).");
}

bool WritePortFile(const std::string& path, int port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    if (!f) return false;
    f << port << "\n";
    if (!f) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

}  // namespace hipserve::cli
