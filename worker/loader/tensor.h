// Tensor: a dense fp32 array with its shape, the unit the loader hands to the model.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hipserve::worker::loader {

// Row-major fp32 tensor. `shape` is outermost first (PyTorch order): a Linear weight is
// [out_features, in_features]. data.size() == product(shape) (1 for an empty shape).
struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  bool empty() const { return data.empty(); }
};

// "[2, 3, 4]", for error messages.
std::string ShapeString(const std::vector<int64_t>& shape);

}  // namespace hipserve::worker::loader
