// Closing the engines' libuv handles so that an environment's teardown waits
// for it. A handle's close callback runs on a later turn of the loop, and it
// is code of this addon, which Node unloads once the environment's cleanup
// is done: a Worker terminated right after an engine closed (or while one is
// stopped by the cleanup hook) would otherwise run the callback from unmapped
// code. The environment's async cleanup hook (addon.cc) completes only once
// `pending` is back to 0.
#pragma once
#include <napi.h>
#include <uv.h>

namespace blockfork {

struct HandleCloses {
  unsigned pending = 0;
  // Set while teardown waits for the last close.
  napi_async_cleanup_hook_handle waiting = nullptr;
};

// uv_close, then `free` the handle's memory once libuv is done with it.
inline void CloseHandle(HandleCloses* closes, uv_handle_t* handle, void (*free)(uv_handle_t*)) {
  struct Ticket {
    HandleCloses* closes;
    void (*free)(uv_handle_t*);
  };
  closes->pending++;
  handle->data = new Ticket{closes, free};
  uv_close(handle, [](uv_handle_t* h) {
    Ticket* ticket = static_cast<Ticket*>(h->data);
    HandleCloses* closes = ticket->closes;
    ticket->free(h);
    delete ticket;
    if (--closes->pending == 0 && closes->waiting != nullptr) {
      napi_async_cleanup_hook_handle waiting = closes->waiting;
      closes->waiting = nullptr;
      napi_remove_async_cleanup_hook(waiting);
    }
  });
}

}  // namespace blockfork
