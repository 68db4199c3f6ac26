// The driver of prepare(activations=...) products (kernels/dot.hpp): the dense operand packed
// once, then slices of output rows, balanced by their groups, on the backend's threads.
#pragma once

#include <cstdint>
#include <stdexcept>

#include "kernels/dot.hpp"
#include "product.hpp"

namespace spmm {

// C = W D for W's grouped rows (w.rows x w.cols) and D (w.cols x n, any strides), the dense
// operand rounded to `format` (bfloat16 or int8) here.
inline void multiply_grouped(const GroupedView& w, ValueFormat format, const StridedView<float>& d,
                             const OutView<float>& c, const Call& k) {
    if (d.rows != w.cols || c.rows != w.rows || c.cols != d.cols) {
        throw std::invalid_argument("multiply_grouped: operand shapes do not match");
    }
    if (format != ValueFormat::int8 && format != ValueFormat::bfloat16) {
        throw std::invalid_argument("activations must be bfloat16 or int8");
    }
    check_backend_and_simd(k.backend, k.simd);
    const DotKernel fn = dot_kernel(format, k.simd).first;
    if (c.rows == 0 || c.cols == 0) return;
    const PackedActivations packed(format, d.data, d.rows, d.cols, d.row_stride, d.col_stride);
    const PackedDense dv = packed.view();
    const std::int64_t entries = w.ptr[w.rows] * group_width(format);
    const int t = k.threads(entries, w.rows, c.cols);
    const std::int64_t pieces = k.pieces(entries, c.cols, t);
    if (t == 1 && pieces == 1) return fn(w, dv, c, 0, w.rows);
    k.run(partition_rows(w.ptr, w.rows, static_cast<int>(t * pieces), k.partition), t,
          [&](std::int64_t r0, std::int64_t r1) { fn(w, dv, c, r0, r1); });
}

}  // namespace spmm
