# cython: language_level=3, initializedcheck=False
# distutils: language = c++
# (boundscheck and wraparound are set by setup.py: off, or on with SPMM_CYTHON_DEBUG=1)
"""Typed entry points into spmm's C++ kernels.

This layer only converts: numpy arrays in (as typed memoryviews), raw pointers and sizes out,
the GIL released around every C++ call, and C++ exceptions turned into Python ones
(``std::invalid_argument`` becomes ``ValueError``). Every decision (which kernel, backend,
thread count, layout) is made by the Python layer before it calls here.
"""

from libc.stdint cimport int32_t, int64_t, uint16_t
from libcpp cimport bool as cbool
from libcpp.string cimport string
from libcpp.vector cimport vector

ctypedef fused index_t:
    int32_t
    int64_t

ctypedef fused value_t:
    float
    double

# A CSR's row pointers and column indices: int32/int32, int64/int64, or int64/uint16 (a
# prepared matrix with at most 65,536 columns). Other pairs are rejected before any C++ call.
ctypedef fused offset_t:
    int32_t
    int64_t

ctypedef fused column_t:
    int32_t
    int64_t
    uint16_t


cdef extern from "spmm/spmm.hpp" namespace "spmm" nogil:
    void c_csr_times_dense "spmm::csr_times_dense"[I, T](
        const I* indptr, const I* indices, const T* data, int64_t rows, int64_t cols,
        const T* b, int64_t b_cols, int64_t ldb,
        T* c, int64_t c_row_stride, int64_t c_col_stride,
        int kernel, int backend, int nthreads, int partition, int simd,
        const int64_t* bounds, int64_t nbounds) except +
    void c_csr16_times_dense "spmm::csr16_times_dense"[T](
        const int64_t* indptr, const uint16_t* indices, const T* data, int64_t rows,
        int64_t cols, const T* b, int64_t b_cols, int64_t ldb,
        T* c, int64_t c_row_stride, int64_t c_col_stride,
        int kernel, int backend, int nthreads, int partition, int simd,
        const int64_t* bounds, int64_t nbounds) except +
    void c_validate_csr "spmm::validate_csr"[I](
        const I* indptr, const I* indices, int64_t rows, int64_t cols,
        int64_t nnz_stored) except +
    vector[int64_t] c_partition_bounds "spmm::partition_bounds"[I](
        const I* indptr, int64_t rows, int nthreads, int partition) except +
    cbool c_has_openmp "spmm::has_openmp"()
    cbool c_openmp_usable "spmm::openmp_usable"()
    long c_openmp_version "spmm::openmp_version"()
    string c_compiler_version "spmm::compiler_version"()
    string c_compile_args "spmm::compile_args"()
    size_t c_pool_workers "spmm::pool_workers"() except +
    vector[string] c_simd_levels "spmm::simd_levels"() except +


def validate_csr(const index_t[::1] indptr, const index_t[::1] indices, int64_t cols):
    """Raise ValueError unless (indptr, indices) is a valid CSR structure with ``cols`` columns.

    ``indptr`` must have at least one entry; its length minus one is the number of rows.
    """
    cdef int64_t rows = indptr.shape[0] - 1
    cdef int64_t nnz_stored = indices.shape[0]
    cdef const index_t* indices_ptr = &indices[0] if nnz_stored > 0 else NULL
    with nogil:
        c_validate_csr(&indptr[0], indices_ptr, rows, cols, nnz_stored)


def csr_times_dense(const offset_t[::1] indptr, const column_t[::1] indices,
                    const value_t[::1] data, int64_t cols,
                    const value_t[:, :] b, value_t[:, :] c,
                    int kernel, int backend, int nthreads, int partition, int simd,
                    const int64_t[::1] bounds=None):
    """Write ``A @ b`` into ``c``, with ``A`` the (validated) CSR matrix of ``cols`` columns.

    ``b`` must have unit column stride (or a single column); ``c`` may have any strides.
    Both must be non-empty; the caller handles empty products. ``bounds``: slice boundaries
    from :func:`partition_bounds` for this matrix, ``nthreads`` and ``partition``, or None.
    """
    cdef int64_t itemsize = sizeof(value_t)
    cdef int64_t rows = indptr.shape[0] - 1
    cdef int64_t ldb = b.strides[0] // itemsize
    cdef int64_t c_row_stride = c.strides[0] // itemsize
    cdef int64_t c_col_stride = c.strides[1] // itemsize
    cdef const column_t* indices_ptr = &indices[0] if indices.shape[0] > 0 else NULL
    cdef const value_t* data_ptr = &data[0] if data.shape[0] > 0 else NULL
    cdef const int64_t* bounds_ptr = NULL
    cdef int64_t nbounds = 0
    if bounds is not None and bounds.shape[0] > 0:
        bounds_ptr = &bounds[0]
        nbounds = bounds.shape[0]
    if b.shape[0] != cols or c.shape[0] != rows or c.shape[1] != b.shape[1]:
        raise ValueError("csr_times_dense: operand shapes do not match")
    if b.shape[1] > 1 and b.strides[1] != itemsize:
        raise ValueError("csr_times_dense: b needs contiguous rows")
    if column_t is uint16_t:
        if offset_t is int32_t:
            raise TypeError("csr_times_dense: 16-bit column indices need int64 row pointers")
        else:
            with nogil:
                c_csr16_times_dense(&indptr[0], indices_ptr, data_ptr, rows, cols,
                                    &b[0, 0], b.shape[1], ldb,
                                    &c[0, 0], c_row_stride, c_col_stride,
                                    kernel, backend, nthreads, partition, simd,
                                    bounds_ptr, nbounds)
    elif (offset_t is int32_t and column_t is int32_t) or (
            offset_t is int64_t and column_t is int64_t):
        with nogil:
            c_csr_times_dense(&indptr[0], indices_ptr, data_ptr, rows, cols,
                              &b[0, 0], b.shape[1], ldb,
                              &c[0, 0], c_row_stride, c_col_stride,
                              kernel, backend, nthreads, partition, simd,
                              bounds_ptr, nbounds)
    else:
        raise TypeError("csr_times_dense: indptr and indices must have the same dtype")


def partition_bounds(const index_t[::1] indptr, int nthreads, int partition):
    """The row boundaries of the slices a partition strategy produces, as a list."""
    cdef vector[int64_t] bounds
    with nogil:
        bounds = c_partition_bounds(&indptr[0], indptr.shape[0] - 1, nthreads, partition)
    return list(bounds)


def simd_levels():
    """The instruction-set levels this build and CPU support, lowest first."""
    return [level.decode() for level in c_simd_levels()]


def has_openmp():
    """True when this build was compiled with OpenMP."""
    return bool(c_has_openmp())


def openmp_usable():
    """False in a process forked after its parent ran OpenMP teams (libgomp cannot run there)."""
    return bool(c_openmp_usable())


def openmp_version():
    """The ``_OPENMP`` date of the compiler that built this module, 0 without OpenMP."""
    return int(c_openmp_version())


def compiler_version():
    """The compiler that built this module."""
    return c_compiler_version().decode()


def compile_args():
    """The extra compiler arguments this module was built with."""
    return c_compile_args().decode()


def pool_workers():
    """Worker threads the ``threads`` backend's persistent pool has started so far."""
    cdef size_t n
    with nogil:
        n = c_pool_workers()
    return int(n)
