// reconad::set_flush_denormal: torch.set_flush_denormal (x86 FTZ/DAZ) on every thread of torch's intra-op team.
// The floating-point mode is per thread: torch.set_flush_denormal sets the calling thread's, and the other
// intra-op threads go on computing subnormals in microcode (see reconad/ops/flush_denormal.py).
//
//   on -> false where the CPU has no such mode (nothing changed)
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

namespace {

bool set_flush_denormal(bool on) {
  if (!at::globalContext().setFlushDenormal(on)) {   // the calling thread
    return false;
  }
  // One index per thread: at::parallel_for's OpenMP backend hands thread t of the team the chunk [t, t + 1).
  at::parallel_for(0, at::get_num_threads(), 1,
                   [on](int64_t, int64_t) { at::globalContext().setFlushDenormal(on); });
  return true;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(reconad, m) {
  m.def("set_flush_denormal(bool on) -> bool", &set_flush_denormal);
}
