// What one Node.js environment (the main thread, or one Worker) holds of the
// addon, as N-API instance data: nothing native is shared between threads,
// so each environment's JS thread is the only one to touch its own state.
//
// Teardown order. When an environment ends (a Worker terminated, or the
// process exiting), Node runs its cleanup hooks newest first: each slab's
// external-buffer hook (registered by allocSlab) runs before the addon's own
// async hook (registered at load), and the ObjectWraps and this instance data
// are finalized after both, once the async hook has completed (when the last
// of the engines' libuv handles has closed: handle_close.h). So slabs may be finalized while engines still have
// requests in flight: a pinned slab is then orphaned, not unmapped (slab.h),
// and the addon's hook stops every open engine (its worker threads joined, its
// ring drained), which releases the requests' pins and, with the last one,
// unmaps the orphans. Nothing runs JS from there on: callbacks are dropped.
#pragma once
#include <napi.h>

#include <memory>
#include <set>

#include "handle_close.h"
#include "slab.h"

namespace blockfork {

// An open engine, as the environment's cleanup hook sees it.
class OpenEngine {
 public:
  virtual ~OpenEngine() = default;
  // Stops the engine with whatever is in flight: nothing it held is touched
  // by the kernel or a worker thread afterwards, and every pin is released.
  virtual void Abandon() = 0;
};

struct Instance {
  // Shared with every slab, whose finalizer may run after this is gone.
  std::shared_ptr<SlabRegistry> slabs = std::make_shared<SlabRegistry>();
  Napi::FunctionReference engineConstructor;
  // The property names a request is read by ("op", "dsync", "offset",
  // "buffers"), made once: a name given as a C string is made into a JS
  // string, and looked up in V8's string table, at every read of it.
  Napi::ObjectReference requestKeys;
  std::set<OpenEngine*> engines;
  HandleCloses closes;
  // Tells the batches apart, so that a batch takes one reference per slab.
  uint64_t batches = 0;
};

inline Instance* GetInstance(napi_env env) { return Napi::Env(env).GetInstanceData<Instance>(); }

}  // namespace blockfork
