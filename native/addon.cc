// blockfork's native addon: page slabs, page copy, device open and geometry,
// I/O engines (io_uring, thread pool), flush, and CRC32C. No cache policy lives here.
//
// Loaded once per environment (the main thread and each Worker): everything
// it keeps lives in that environment's Instance (instance.h).
#include <napi.h>

#include <vector>

#include "crc32c.h"
#include "device.h"
#include "engine.h"
#include "instance.h"
#include "slab.h"

namespace {

// Runs before the environment's ObjectWraps and instance data are finalized
// (instance.h): stops every engine still open, with whatever it has in
// flight, and completes once their handles have closed (handle_close.h).
void AbandonEngines(napi_async_cleanup_hook_handle hook, void* data) {
  blockfork::Instance* instance = static_cast<blockfork::Instance*>(data);
  std::vector<blockfork::OpenEngine*> open(instance->engines.begin(), instance->engines.end());
  for (blockfork::OpenEngine* engine : open) engine->Abandon();
  if (instance->closes.pending == 0) {
    napi_remove_async_cleanup_hook(hook);
  } else {
    instance->closes.waiting = hook;
  }
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  blockfork::Instance* instance = new blockfork::Instance();
  env.SetInstanceData(instance);
  napi_add_async_cleanup_hook(env, AbandonEngines, instance, nullptr);
  blockfork::InitSlab(env, exports);
  blockfork::InitDevice(env, exports);
  blockfork::InitEngine(env, exports);
  blockfork::InitCrc32c(env, exports);
  return exports;
}

NODE_API_MODULE(blockfork, Init)
