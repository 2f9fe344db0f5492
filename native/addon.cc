// blockfork's native addon: page slabs, page copy, device open and geometry,
// I/O engines (io_uring, thread pool) and flush. No cache policy lives here.
#include <napi.h>

#include "device.h"
#include "engine.h"
#include "slab.h"

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  blockfork::InitSlab(env, exports);
  blockfork::InitDevice(env, exports);
  blockfork::InitEngine(env, exports);
  return exports;
}

NODE_API_MODULE(blockfork, Init)
