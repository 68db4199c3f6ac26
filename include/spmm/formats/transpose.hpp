// A CSR matrix transposed per call: the CSR arrays of A from those of Aᵀ (A's CSC arrays, or
// W's CSR arrays for X @ W), so that a product with many dense columns is read by rows (the
// row-driven kernel keeps C in registers and loads B) rather than scattered (a load and a
// store of C per entry and vector).
//
// In O(nnz), as scipy's tocsc: each column of Aᵀ counted, the counts summed into row pointers,
// then every entry placed. A user's matrix is checked as it is read (each row's pointers as
// the row starts, each index before it is counted), so the copy is trusted. A row of A lists
// its entries in the order of Aᵀ's rows: sorted, with any duplicates kept (the kernels sum
// them, as scipy does).
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "../parallel/partition.hpp"
#include "views.hpp"

namespace spmm {

// Whether Aᵀ's arrays can be transposed here: A's columns (Aᵀ's rows) fit index type I, and
// the rows' pointers never decrease and stay within the stored entries (indptr[0] == 0 is
// checked by the caller), so that the rows hold indptr[rows] entries in all. Pointers that
// decrease, or point past the arrays, leave the matrix to a kernel that reads it as it is
// (and names what is wrong).
template <class I, class T>
bool transposable(const CsrView<I, T>& at) {
    if (at.rows > static_cast<std::int64_t>(std::numeric_limits<I>::max())) return false;
    const offset_t<I>* const ptr = at.indptr;
    bool decreasing = false;
    for (std::int64_t p = 0; p < at.rows; ++p) decreasing |= ptr[p + 1] < ptr[p];
    return !decreasing && static_cast<std::int64_t>(ptr[at.rows]) <= at.stored;
}

// Rows of Aᵀ are cut into `parts` ranges of about equal entries, copied by parallel threads:
// each range counts its columns in a histogram of its own, the histograms' running sum (column
// by column, range by range) gives each range where its entries of every row of A go, and
// each range then places its entries there. Rows of A stay sorted: the ranges follow Aᵀ's row
// order. `for_each(parts, f)` calls f(s) for s in [0, parts), serially or on threads.
template <class I, class T>
class TransposedCsr {
  public:
    // Precondition: transposable(at).
    template <class ForEach>
    TransposedCsr(const CsrView<I, T>& at_ref, std::int64_t parts, ForEach&& for_each)
        : ptr_(static_cast<std::size_t>(at_ref.cols) + 1, 0) {
        const CsrView<I, T> at = at_ref;
        const auto cols = static_cast<std::size_t>(at.cols);
        const std::vector<std::int64_t> bounds =
            partition_rows(at.indptr, at.rows, static_cast<int>(parts), Partition::nnz);
        parts = static_cast<std::int64_t>(bounds.size()) - 1;
        // counts[s * cols + j]: range s's entries in row j of A, then where the first goes.
        std::vector<offset_t<I>> counts(static_cast<std::size_t>(parts) * cols, 0);
        for_each(parts, [&](std::int64_t s) {
            offset_t<I>* const count = counts.data() + static_cast<std::size_t>(s) * cols;
            for (std::int64_t p = bounds[s]; p < bounds[s + 1]; ++p) {
                std::int64_t q, q1;
                at.template row<true>(p, q, q1);
                for (; q < q1; ++q) ++count[at.template column<true>(q)];
            }
        });
        offset_t<I> running = 0;
        for (std::size_t j = 0; j < cols; ++j) {
            ptr_[j] = running;
            for (std::int64_t s = 0; s < parts; ++s) {
                offset_t<I>& count = counts[static_cast<std::size_t>(s) * cols + j];
                const offset_t<I> here = count;
                count = running;
                running += here;
            }
        }
        ptr_[cols] = running;
        const auto entries = static_cast<std::size_t>(running);
        indices_.resize(entries);
        data_.resize(entries);
        I* const indices = indices_.data();
        T* const data = data_.data();
        for_each(parts, [&](std::int64_t s) {
            offset_t<I>* const next = counts.data() + static_cast<std::size_t>(s) * cols;
            for (std::int64_t p = bounds[s]; p < bounds[s + 1]; ++p) {
                for (std::int64_t q = at.row_begin(p), q1 = at.row_end(p); q < q1; ++q) {
                    const auto k = static_cast<std::size_t>(next[at.indices[q]]++);
                    indices[k] = static_cast<I>(p);
                    data[k] = at.data[q];
                }
            }
        });
        view_ = CsrView<I, T>{ptr_.data(), indices_.data(), data_.data(), at.cols, at.rows,
                              static_cast<std::int64_t>(entries)};
    }

    const CsrView<I, T>& view() const { return view_; }

  private:
    std::vector<offset_t<I>> ptr_;
    std::vector<I> indices_;
    std::vector<T> data_;
    CsrView<I, T> view_{};
};

}  // namespace spmm
