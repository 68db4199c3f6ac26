// Packing a dense operand whose rows are not contiguous (X^T of a C-ordered X, a view of every
// other column) into one whose rows are, as the kernels need (DenseView).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "../simd/levels.hpp"
#include "views.hpp"

namespace spmm {

// Copies start on a cache line (kCacheLineBytes), and their rows never straddle two cache
// lines more than they must: a row of up to a line is padded to the next power of two (so it
// sits inside one line), a longer one to a whole number of lines; the Python layer's
// aligned_copy does the same for the operands it converts.

// Rows of this many elements are copied together: the reads of one column of the block are
// then contiguous when B's rows are (stride 1, as in X^T), and the block's rows of the copy,
// 16 cache lines wide at most per column step, stay in L1 while its columns are filled.
constexpr std::int64_t kPackRowBlock = 16;

// Elements between the rows of a copy of `cols` columns: a row of up to a cache line is padded to
// the next power of two (it then sits inside one line), a longer one to whole lines, so that
// no row straddles two lines more than it must (a load or store that straddles costs two).
template <class T>
std::int64_t padded_ld(std::int64_t cols) {
    const auto item = static_cast<std::int64_t>(sizeof(T));
    const std::int64_t row_bytes = cols * item;
    std::int64_t ld_bytes = kCacheLineBytes;
    if (row_bytes <= kCacheLineBytes) {
        while (ld_bytes / 2 >= row_bytes && ld_bytes / 2 >= item) ld_bytes /= 2;
    } else {
        ld_bytes = (row_bytes + kCacheLineBytes - 1) / kCacheLineBytes * kCacheLineBytes;
    }
    return std::max(cols, ld_bytes / item);
}

// When a B whose rows are contiguous is still worth an aligned copy: when B does not start on a
// cache line, or its rows do not all start at the same offset in one, the SIMD kernels either
// straddle lines or shift their blocks and load one masked vector more per row. The copy is
// O(k n) against the product's O(nnz n): it is made when each of B's rows is read at least 4
// times on average, and
//  * for a B that stays in the L2 (up to kPackNearBytes), when its rows are short
//    (kPackMaxRowBytes: one vector more per row doubles the loads of a 64-byte row but adds a
//    sixteenth to a 1 KiB one; a float32 B of 16 columns read 48 bytes past a line ran at two
//    thirds of a copy's speed);
//  * for a larger one, up to kPackMaxBytes (the copy's memory), when its rows span at most
//    kPackFarMaxRowBytes. Its rows, read in the order A's column indices name them, which no
//    prefetcher follows, cost a cache miss per line they span: 16 bytes past a line, 8 float32
//    columns span 1.5 lines on average instead of 1, 8 float64 2 instead of 1, 64 float32 5
//    instead of 4. The copy (page faults included) costs about what a fifth more misses save
//    (2^17 rows, 16 entries per row, serial: 8 float64 columns 9.6 ms copied against 12 ms as
//    they are, 64 float32 columns 34 ms against 33;
//    `python bench/micro/science.py --compare pack`).
constexpr std::int64_t kPackNearBytes = std::int64_t{1} << 20;
constexpr std::int64_t kPackMaxRowBytes = 256;
constexpr std::int64_t kPackMaxBytes = std::int64_t{64} << 20;
constexpr std::int64_t kPackFarMaxRowBytes = 128;

template <class T>
bool worth_packing(const T* b, std::int64_t rows, std::int64_t cols, std::int64_t row_stride,
                   std::int64_t nnz) {
    const std::int64_t row_bytes = cols * static_cast<std::int64_t>(sizeof(T));
    if (cols <= 1 || row_bytes > kPackMaxRowBytes) return false;
    if (rows * row_bytes > kPackMaxBytes || nnz < 4 * rows) return false;
    if (rows * row_bytes > kPackNearBytes && row_bytes > kPackFarMaxRowBytes) return false;
    const auto address = reinterpret_cast<std::uintptr_t>(b);
    const std::int64_t stride_bytes = row_stride * static_cast<std::int64_t>(sizeof(T));
    // Rows that all start at one offset in a line, or sit inside lines as a copy's would
    // (padded_ld), gain nothing from a copy.
    const bool rows_placed = stride_bytes % kCacheLineBytes == 0 || row_stride == padded_ld<T>(cols);
    return address % kCacheLineBytes != 0 || !rows_placed;
}

// Copies at least this large ask the kernel for huge pages (Linux, transparent huge pages in
// "madvise" mode, as numpy does for its arrays): rows read in random order from a 32 MiB copy
// in 4 KiB pages miss the TLB on most rows (64 float32 columns ran 13 % slower than from huge
// pages; `python bench/micro/science.py --compare pages`).
constexpr std::size_t kHugePageAdviceBytes = std::size_t{4} << 20;

// Advise huge pages for the whole 2 MiB pages inside [p, p + bytes), not yet touched.
inline void advise_huge_pages(void* p, std::size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (bytes < kHugePageAdviceBytes) return;
    constexpr std::uintptr_t kHuge = std::uintptr_t{2} << 20;
    const auto lo = (reinterpret_cast<std::uintptr_t>(p) + kHuge - 1) / kHuge * kHuge;
    const auto hi = (reinterpret_cast<std::uintptr_t>(p) + bytes) / kHuge * kHuge;
    if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);  // advice only
#else
    (void)p;
    (void)bytes;
#endif
}

// rows x padded_ld(cols) elements starting on a cache line, uninitialized.
template <class T>
class AlignedRows {
  public:
    AlignedRows(std::int64_t rows, std::int64_t cols) : ld_(padded_ld<T>(cols)) {
        const std::int64_t per_line = std::max<std::int64_t>(1, kCacheLineBytes / static_cast<std::int64_t>(sizeof(T)));
        const auto count = static_cast<std::size_t>(std::max<std::int64_t>(1, rows) * ld_ + per_line);
        storage_.reset(new T[count]);
        advise_huge_pages(storage_.get(), count * sizeof(T));
        const auto address = reinterpret_cast<std::uintptr_t>(storage_.get());
        const auto shift = static_cast<std::int64_t>((kCacheLineBytes - address % kCacheLineBytes) % kCacheLineBytes);
        data_ = storage_.get() + shift / static_cast<std::int64_t>(sizeof(T));
    }
    T* data() const { return data_; }
    std::int64_t ld() const { return ld_; }

  private:
    std::int64_t ld_;
    std::unique_ptr<T[]> storage_;
    T* data_ = nullptr;
};

// A packed copy of B (rows x cols, element (r, j) at b[r * row_stride + j * col_stride]).
// O(rows x cols) time, rows x ld + one cache line of memory.
template <class T>
class PackedRows {
  public:
    // `for_blocks(blocks, copy)` calls copy(first, last) on ranges of [0, blocks) that cover it
    // once (blocks of kPackRowBlock rows): serially, or spread over threads.
    template <class ForBlocks>
    PackedRows(const T* b, std::int64_t rows, std::int64_t cols, std::int64_t row_stride,
               std::int64_t col_stride, ForBlocks&& for_blocks)
        : copy_(rows, cols) {
        T* const data = copy_.data();
        const std::int64_t ld = copy_.ld();
        const std::int64_t blocks = (rows + kPackRowBlock - 1) / kPackRowBlock;
        for_blocks(blocks, [&](std::int64_t first, std::int64_t last) {
            const std::int64_t end = std::min(rows, last * kPackRowBlock);
            if (col_stride == 1) {  // rows contiguous already (a copy for alignment): row by row
                for (std::int64_t r = first * kPackRowBlock; r < end; ++r) {
                    std::copy(b + r * row_stride, b + r * row_stride + cols, data + r * ld);
                }
                return;
            }
            for (std::int64_t r0 = first * kPackRowBlock; r0 < end; r0 += kPackRowBlock) {
                const std::int64_t r1 = std::min(end, r0 + kPackRowBlock);
                for (std::int64_t j = 0; j < cols; ++j) {
                    for (std::int64_t r = r0; r < r1; ++r) {
                        data[r * ld + j] = b[r * row_stride + j * col_stride];
                    }
                }
            }
        });
        view_ = DenseView<T>{data, rows, cols, ld};
    }

    PackedRows(const T* b, std::int64_t rows, std::int64_t cols, std::int64_t row_stride,
               std::int64_t col_stride)
        : PackedRows(b, rows, cols, row_stride, col_stride,
                     [](std::int64_t blocks, auto&& copy) { copy(0, blocks); }) {}

    const DenseView<T>& view() const { return view_; }

  private:
    AlignedRows<T> copy_;
    DenseView<T> view_{};
};

}  // namespace spmm
