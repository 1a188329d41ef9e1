// reconad::pro_curve: the per-region-overlap curve of the MVTec AD protocol and its area up to an FPR
// limit (see reconad/ops/pro_curve.py for the definition). Kernels: cpu/pro_curve_cpu.cpp, cuda/pro_curve_cuda.cu.
//
//   anomaly_maps (N, H, W) float32 / float64, masks (N, H, W) bool / uint8 (nonzero = anomalous)
//   -> fpr, pro: float64 curve from (0, 0) to the first point past fpr_limit (empty unless return_curve)
//      stats: float64 (3,) = [area up to fpr_limit (not divided by it), normal pixels, regions]
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(reconad, m) {
  m.def("pro_curve(Tensor anomaly_maps, Tensor masks, float fpr_limit, bool return_curve) "
        "-> (Tensor fpr, Tensor pro, Tensor stats)");
}
