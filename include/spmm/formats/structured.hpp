// Structured weights for X @ W: the column-tile ("panels") layout shared by the tile-wise and
// block layouts, and the N:M layout.
//
// W (rows = inputs, cols = outputs) is cut into column tiles of `width` outputs. Tile t keeps a
// list of units; a unit is `run` consecutive input rows (1 for tile-wise sparsity, the block
// height for block sparsity) whose whole row segment in the tile is stored, densely, as `run`
// rows of a panel. Then Y[:, tile] = X[:, kept rows] * panel: a gather of X's kept columns and
// a small dense product, which is what lets structured sparsity run at dense-GEMM speed per
// stored entry instead of paying an index and a scattered access per entry.
//
// T is the type of the stored values: float, double, or a reduced format (formats/values.hpp)
// whose products compute in float.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../simd/levels.hpp"
#include "values.hpp"
#include "views.hpp"

namespace spmm {

// The largest N:M group: offsets inside a group are stored in one byte.
constexpr std::int64_t kMaxGroup = 255;

template <class T>
struct PanelsView {
    std::int64_t rows;            // input rows of W (columns of X)
    std::int64_t cols;            // output columns of W (columns of Y)
    std::int64_t width;           // outputs per tile; the last tile may be narrower
    std::int64_t ld;              // elements between consecutive panel rows (>= width)
    std::int64_t run;             // input rows per unit: 1, or the block height
    const std::int64_t* unit_ptr; // tiles + 1 entries: tile t holds units [unit_ptr[t], unit_ptr[t+1])
    const std::int32_t* unit_row; // each unit's first input row
    const T* values;              // unit q's row i is the panel row at values + (q * run + i) * ld
    const float* scale = nullptr; // int8 values: cols entries, output j scaled by scale[j]

    std::int64_t tiles() const { return width <= 0 ? 0 : (cols + width - 1) / width; }
    std::int64_t tile_begin(std::int64_t t) const { return t * width; }
    std::int64_t tile_width(std::int64_t t) const { return std::min(width, cols - t * width); }
    // Input rows of unit q that exist: a block of the last, ragged block row has fewer.
    std::int64_t unit_rows(std::int64_t q) const {
        return std::min<std::int64_t>(run, rows - static_cast<std::int64_t>(unit_row[q]));
    }
};

// W (rows = inputs, cols = outputs) with N:M sparsity along the inputs: in every group of m
// consecutive input rows each output column keeps at most n weights. The columns are cut into
// chunks of `chunk` columns; chunk c holds, for each (group, slot) row g * n + s, the slot's
// kept value of each of its columns and that value's offset inside the group (one byte), so a
// chunk is one contiguous stream the kernel reads front to back. A column with fewer than n
// kept in a group holds zeros (value 0, offset 0).
template <class T>
struct NmView {
    std::int64_t rows;
    std::int64_t cols;
    std::int64_t n;
    std::int64_t m;
    std::int64_t chunk;           // columns per chunk (the last chunk is zero padded)
    const T* values;              // chunks x (groups * n) x chunk
    const std::uint8_t* offsets;  // chunks x (groups * n) x chunk
    const float* scale = nullptr; // int8 values: cols entries, output j scaled by scale[j]

    std::int64_t groups() const { return m <= 0 ? 0 : (rows + m - 1) / m; }
    std::int64_t chunks() const { return chunk <= 0 ? 0 : (cols + chunk - 1) / chunk; }
    // Element (row, column j - c * chunk) of chunk c.
    std::int64_t at(std::int64_t c, std::int64_t row) const {
        return (c * groups() * n + row) * chunk;
    }
};

// Batch rows from which the N:M kernels of the SIMD levels read Xᵀ (kernels/nm.inc:
// nm_broadcast) rather than X: at 32 the two formulations are even (a pass of two vectors per
// column), at 64 and 256 the Xᵀ one leads; below 32 a pass would fill less than two vectors
// while the permute formulation still shares each load of W among 4 batch rows. Re-measured by
// `python bench/run.py --suite structured --only nm4`.
constexpr std::int64_t kNmBroadcastMinBatch = 32;

// The batch rows of a packed Xᵀ (PackedNmXt) are padded to a multiple of this many elements:
// of every pass width of nm_broadcast (4 vectors), so a pass never reads past a row.
constexpr std::int64_t kNmXtRowMultiple = 64;

// The share of L2 (simd/cache.hpp) the rows of Xᵀ that nm_broadcast's passes read may take,
// beside a chunk's stream: multiply_nm runs every slice on one round of batch rows whose Xᵀ
// fits, then the next (so every slice reads Xᵀ from L2, not each from L3: at batch 256 on a
// 4096-input layer, one product took 1.7x the time of four of batch 64), and nm_broadcast
// blocks W's groups by it likewise. As for the CSR kernel's passes (tiled.inc, kL2ShareOfB);
// re-measured by `python bench/run.py --suite structured --only nm4`.
constexpr std::int64_t kNmXtShareOfL2 = 4;

// Xᵀ for the N:M kernels, packed once per product (multiply_nm) for all its slices: W's groups
// x m rows (zero past X's columns) of the batch rows (zero past them, to a multiple of
// kNmXtRowMultiple), each row starting on a cache line. view() presents it as X: element
// (b, k) at data[k * ld + b], with groups x m columns.
template <class T>
class PackedNmXt {
  public:
    PackedNmXt(const StridedView<T>& x, std::int64_t rows)
        : ld_((x.rows + kNmXtRowMultiple - 1) / kNmXtRowMultiple * kNmXtRowMultiple),
          storage_(static_cast<std::size_t>(std::max<std::int64_t>(1, rows) * ld_ + kCacheLineBytes), T(0)) {
        const auto address = reinterpret_cast<std::uintptr_t>(storage_.data());
        data_ = storage_.data() + (kCacheLineBytes - address % kCacheLineBytes) % kCacheLineBytes / sizeof(T);
        // Blocks of batch rows: the reads of X walk a few of its rows at a time.
        constexpr std::int64_t kBlock = 16;
        for (std::int64_t b0 = 0; b0 < x.rows; b0 += kBlock) {
            const std::int64_t b1 = std::min(x.rows, b0 + kBlock);
            for (std::int64_t k = 0; k < x.cols; ++k)
                for (std::int64_t b = b0; b < b1; ++b) data_[k * ld_ + b] = x.at(b, k);
        }
        view_ = StridedView<T>{data_, x.rows, rows, 1, ld_};
    }
    const StridedView<T>& view() const { return view_; }

  private:
    std::int64_t ld_;
    std::vector<T> storage_;
    T* data_ = nullptr;
    StridedView<T> view_{};
};

}  // namespace spmm
