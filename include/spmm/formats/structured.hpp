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

}  // namespace spmm
