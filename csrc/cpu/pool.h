// Average pooling kernels (csrc/cpu/pool.cpp), beside max_pool2d (declared in kernels.h).
// NCHW planes, C-contiguous, templated on float and double. Every input gradient here is
// an activation gradient: WRITTEN (=), never accumulated.
#pragma once

#include "cpu/common.h"

namespace fastdl::cpu {

// Average pooling, as torch.nn.functional.avg_pool2d
// (https://pytorch.org/docs/stable/generated/torch.nn.functional.avg_pool2d.html):
// input (planes = N*C, H, W) -> output (planes, OH, OW); for output (y, x)
//   rows    [y*sh - ph, min(y*sh - ph + kh, H + ph)),  cols likewise,
//   window  = those rows x cols clipped to the input,
//   out     = sum(in[window]) / divisor,
//   divisor = divisor_override                         if it is not 0,
//           = rows * cols (before clipping: padding counts, the part past H + ph does not)
//                                                      if count_include_pad,
//           = the clipped window's size                otherwise.
// A window with no input element outputs 0 (PyTorch's rule; the checks make it unreachable).
struct AvgPool2dShape {
  index_t planes, height, width;
  index_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
  index_t out_h, out_w;
  bool count_include_pad;
  index_t divisor_override;  // 0: none
};

template <typename T>
void avg_pool2d_forward(const T* input, T* output, const AvgPool2dShape& s);

// grad_input[window of (y, x)] += grad_output[y, x] / divisor(y, x); grad_input is written.
template <typename T>
void avg_pool2d_backward(const T* grad_output, T* grad_input, const AvgPool2dShape& s);

// Adaptive average pooling, as torch.nn.functional.adaptive_avg_pool2d
// (https://pytorch.org/docs/stable/generated/torch.nn.functional.adaptive_avg_pool2d.html):
//   rows [floor(y*H/OH), ceil((y+1)*H/OH)),  cols [floor(x*W/OW), ceil((x+1)*W/OW)),
//   out[y, x] = sum(in[rows, cols]) / len(rows) / len(cols)   (two divisions, as PyTorch).
struct AdaptivePool2dShape {
  index_t planes, height, width, out_h, out_w;
};

template <typename T>
void adaptive_avg_pool2d_forward(const T* input, T* output, const AdaptivePool2dShape& s);

// grad_input[rows, cols of (y, x)] += grad_output[y, x] / len(rows) / len(cols); written.
template <typename T>
void adaptive_avg_pool2d_backward(const T* grad_output, T* grad_input,
                                  const AdaptivePool2dShape& s);

}  // namespace fastdl::cpu
