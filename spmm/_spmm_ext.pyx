# cython: language_level=3, initializedcheck=False
# distutils: language = c++
# (boundscheck and wraparound are set by setup.py: off, or on with SPMM_CYTHON_DEBUG=1)
"""Typed entry points into spmm's C++ kernels.

This layer only converts: numpy arrays in, raw pointers and sizes out, the GIL released
around every C++ call, and C++ exceptions turned into Python ones (``std::invalid_argument``
becomes ``ValueError``). Every decision (which kernel, backend, thread count, layout) is made
by the Python layer before it calls here. One entry point per kernel family
(``include/spmm/names.hpp``).

The product entry points read numpy's array structs directly rather than through typed
memoryviews: acquiring a memoryview and dispatching a fused ``def`` on its dtype cost several
microseconds per call, as much as a whole small product.
"""

cimport numpy as cnp
from cpython.pythread cimport PyThread_get_thread_ident
from libc.stdint cimport (int8_t, int32_t, int64_t, intptr_t, uint8_t, uint16_t, uint32_t,
                          uint64_t)
from libc.stdlib cimport getenv
from libcpp cimport bool as cbool
from libcpp.string cimport string
from libcpp.vector cimport vector

cnp.import_array()

import threading

import numpy

# C++ exceptions become Python ones here, for every call into C++ (``except +raise_error``):
# invalid_argument is a ValueError, bad_alloc a MemoryError, an interrupted product the
# KeyboardInterrupt (or whatever the signal handler raised) already set by the signal check,
# anything else a RuntimeError. The signal check is what a long product polls on the calling
# thread (spmm::Cancellation): it takes the GIL for a moment and runs Python's signal
# handlers, so Ctrl-C stops the product soon after it is pressed.
cdef extern from *:
    """
    #include <new>
    #include <stdexcept>
    #include "spmm/parallel/cancellation.hpp"

    static void spmm_raise_error() {
        try {
            throw;
        } catch (const spmm::Interrupted& e) {
            if (!PyErr_Occurred()) PyErr_SetNone(PyExc_KeyboardInterrupt);
        } catch (const std::invalid_argument& e) {
            PyErr_SetString(PyExc_ValueError, e.what());
        } catch (const std::bad_alloc&) {
            PyErr_NoMemory();
        } catch (const std::exception& e) {
            PyErr_SetString(PyExc_RuntimeError, e.what());
        } catch (...) {
            PyErr_SetString(PyExc_RuntimeError, "spmm: unknown C++ exception");
        }
    }

    static bool spmm_check_signals(void*) {
        PyGILState_STATE state = PyGILState_Ensure();
        const int raised = PyErr_CheckSignals();
        PyGILState_Release(state);
        return raised != 0;
    }
    """
    void raise_error "spmm_raise_error"()
    cbool check_signals "spmm_check_signals"(void*) noexcept nogil

# Signal handlers run on the main thread only: products on other threads need not poll.
cdef unsigned long main_thread = threading.main_thread().ident

ctypedef fused index_t:
    int32_t
    int64_t

ctypedef fused value_t:
    float
    double


cdef extern from "spmm/spmm.hpp" namespace "spmm" nogil:
    cdef struct Dense:
        const void* data
        int64_t rows, cols, row_stride, col_stride
    cdef struct Out:
        void* data
        int64_t rows, cols, row_stride, col_stride
    cdef struct Config:
        int kernel, backend, nthreads, partition, simd
        int64_t min_work
        cbool (*poll)(void*) noexcept nogil
    void c_csr_product "spmm::csr_product"[O, I, T](
        const O* indptr, const I* indices, const T* data, int64_t rows, int64_t cols,
        int64_t stored, cbool by_columns, cbool check, const Dense& b, const Out& c,
        const Config& k, const int64_t* bounds, int64_t nbounds,
        cbool transpose_first) except +raise_error
    void c_coo_product "spmm::coo_product"[I, T](
        const I* row, const I* col, const T* data, int64_t nnz, int64_t rows, int64_t cols,
        cbool transposed, const Dense& b, const Out& c, const Config& k) except +raise_error
    void c_bsr_product "spmm::bsr_product"[I, T](
        const I* indptr, const I* indices, const T* data, int64_t block_rows,
        int64_t block_cols, int64_t r, int64_t c_, int64_t stored, cbool by_columns,
        const Dense& b, const Out& c, const Config& k) except +raise_error
    void c_dia_product "spmm::dia_product"[T](
        const int64_t* offsets, const T* data, int64_t diagonals, int64_t width, int64_t ld,
        int64_t rows, int64_t cols, cbool transposed, const Dense& b, const Out& c,
        const Config& k) except +raise_error
    vector[string] c_kernel_body "spmm::kernel_body"(int family, int kernel, int simd) except +
    void c_validate_csr "spmm::validate_csr"[I](
        const I* indptr, const I* indices, int64_t rows, int64_t cols,
        int64_t nnz_stored) except +
    vector[int64_t] c_partition_bounds "spmm::partition_bounds"[I](
        const I* indptr, int64_t rows, int nthreads, int partition) except +
    void c_panels_times_dense "spmm::panels_times_dense"[T](
        int64_t rows, int64_t cols, int64_t width, int64_t ld, int64_t run,
        const int64_t* unit_ptr, const int32_t* unit_row, const T* values, const T* x,
        int64_t batch, int64_t x_row_stride, int64_t x_col_stride, T* y, int64_t ldy,
        const Config& k) except +raise_error
    void c_nm_times_dense "spmm::nm_times_dense"[T](
        int64_t rows, int64_t cols, int64_t n, int64_t m, int64_t chunk, const T* values,
        const uint8_t* offsets, const T* x, int64_t batch, int64_t x_row_stride,
        int64_t x_col_stride, T* y, int64_t ldy, const Config& k) except +raise_error
    void c_reduced_csr_product "spmm::reduced_csr_product"[O, I](
        const O* indptr, const I* indices, const void* values, int format, const float* scale,
        int64_t rows, int64_t cols, const Dense& b, const Out& c, const Config& k,
        const int64_t* bounds, int64_t nbounds) except +raise_error
    void c_reduced_panels_times_dense "spmm::reduced_panels_times_dense"(
        int64_t rows, int64_t cols, int64_t width, int64_t ld, int64_t run,
        const int64_t* unit_ptr, const int32_t* unit_row, const void* values, int format,
        const float* scale, const float* x, int64_t batch, int64_t x_row_stride,
        int64_t x_col_stride, float* y, int64_t ldy, const Config& k) except +raise_error
    void c_reduced_nm_times_dense "spmm::reduced_nm_times_dense"(
        int64_t rows, int64_t cols, int64_t n, int64_t m, int64_t chunk, const void* values,
        int format, const float* scale, const uint8_t* offsets, const float* x, int64_t batch,
        int64_t x_row_stride, int64_t x_col_stride, float* y, int64_t ldy,
        const Config& k) except +raise_error
    void c_activations_product "spmm::activations_product"(
        const int64_t* ptr, const int32_t* block, const uint32_t* words, const float* scale,
        const int32_t* correction, int format, int64_t rows, int64_t cols, const Dense& b,
        const Out& c, const Config& k) except +raise_error
    vector[string] c_activations_body "spmm::activations_body"(int format, int simd) except +raise_error
    void c_sliced_product "spmm::sliced_product"(
        const int64_t* slice_ptr, const int32_t* lens, const int32_t* perm, const void* indices,
        int index_bytes, const void* values, int format, cbool f64, const float* scale,
        int64_t rows, int64_t cols, const Dense& b, const Out& c,
        const Config& k) except +raise_error
    void c_build_sliced "spmm::build_sliced"[O, I](
        const O* indptr, const I* indices, const void* values, int value_bytes, int64_t rows,
        const int32_t* perm, const int32_t* lens, const int64_t* slice_ptr, I* out_indices,
        void* out_values) except +
    int64_t c_parallel_min_work "spmm::parallel_min_work"()
    int64_t c_sliced_work_columns "spmm::sliced_work_columns"()
    int c_threads_used "spmm::threads_used"(int64_t entries, int64_t out_rows, int64_t n,
                                            int backend, int nthreads, int64_t min_work)
    cbool c_splits_columns "spmm::splits_columns"(int64_t out_rows, int64_t n, int nthreads,
                                                  cbool rows_contiguous, int itemsize)
    int64_t c_max_group "spmm::max_group"()
    int64_t c_cache_line_bytes "spmm::cache_line_bytes"()
    int64_t c_l2_bytes "spmm::l2_cache_bytes"()
    string c_l2_source "spmm::l2_cache_source"() except +
    void c_set_l2_bytes "spmm::set_l2_cache_bytes"(int64_t bytes)
    void c_set_private_outputs_max_bytes "spmm::set_private_outputs_max_bytes"(int64_t bytes)
    int c_affinity_cpus "spmm::affinity_cpus"()
    cbool c_has_openmp "spmm::has_openmp"()
    cbool c_openmp_usable "spmm::openmp_usable"()
    long c_openmp_version "spmm::openmp_version"()
    string c_compiler_version "spmm::compiler_version"()
    string c_compile_args "spmm::compile_args"()
    size_t c_pool_workers "spmm::pool_workers"() except +
    vector[uint64_t] c_pool_calls_taken "spmm::pool_calls_taken"() except +
    vector[string] c_simd_levels "spmm::simd_levels"() except +
    cbool c_slow_gathers "spmm::slow_gathers"()
    vector[vector[string]] c_vocabulary "spmm::vocabulary"() except +


# --------------------------------------------------------------------------------------------
# Reading operands from numpy's structs. The Python layer (spmm/_operands.py) hands over only
# arrays the kernels can read as they are; these checks guard that promise, and a broken one
# is a ValueError naming the operand, never a crash.

cdef inline void array_bounds(cnp.ndarray arr, intptr_t* lo, intptr_t* hi):
    """The bytes [lo, hi) an array spans (empty when it has no element)."""
    cdef int d
    cdef intptr_t extent
    lo[0] = hi[0] = <intptr_t>cnp.PyArray_DATA(arr)
    if cnp.PyArray_SIZE(arr) == 0:
        return
    for d in range(cnp.PyArray_NDIM(arr)):
        extent = (cnp.PyArray_DIM(arr, d) - 1) * cnp.PyArray_STRIDE(arr, d)
        if extent < 0:
            lo[0] += extent
        else:
            hi[0] += extent
    hi[0] += cnp.PyArray_ITEMSIZE(arr)


cdef inline bint meet(intptr_t lo, intptr_t hi, intptr_t x_lo, intptr_t x_hi):
    """Whether the byte ranges [lo, hi) and [x_lo, x_hi) meet (an empty one meets none)."""
    return lo < hi and x_lo < x_hi and lo < x_hi and x_lo < hi


cdef inline bint overlaps(intptr_t lo, intptr_t hi, object x):
    """Whether the bytes [lo, hi) meet those of the array ``x``."""
    cdef intptr_t x_lo, x_hi
    array_bounds(<cnp.ndarray>x, &x_lo, &x_hi)
    return meet(lo, hi, x_lo, x_hi)


def data_address(cnp.ndarray x):
    """The address of ``x``'s first element (``x.ctypes.data``, without building a ctypes
    object)."""
    return <intptr_t>cnp.PyArray_DATA(x)


def shares_memory(object x, tuple arrays):
    """Whether the ndarray ``x`` may share memory with one of ``arrays`` (ndarrays): the
    bounds check of ``numpy.may_share_memory``, without its per-call cost."""
    cdef intptr_t lo, hi
    array_bounds(<cnp.ndarray?>x, &lo, &hi)
    for y in arrays:
        if overlaps(lo, hi, <cnp.ndarray?>y):
            return True
    return False


cdef int vector_type(object x, str name) except -1:
    """The numpy type number of ``x``, a 1-D, contiguous, aligned, native-endian ndarray."""
    if not cnp.PyArray_Check(x):
        raise TypeError(f"{name} must be a numpy array")
    cdef cnp.ndarray arr = <cnp.ndarray>x
    if cnp.PyArray_NDIM(arr) != 1 or not cnp.PyArray_CHKFLAGS(
            arr, cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_ALIGNED) or not cnp.PyArray_ISNOTSWAPPED(arr):
        raise ValueError(f"{name} must be 1-D, contiguous, aligned and native-endian")
    return cnp.PyArray_TYPE(arr)


cdef int64_t read_bounds(object bounds, const int64_t** data) except -1:
    """The number of slice bounds in ``bounds`` (None: 0), a 1-D int64 array, with ``data``
    set to its first."""
    if bounds is None:
        return 0
    if vector_type(bounds, "bounds") != cnp.NPY_INT64:
        raise ValueError("bounds must be int64")
    data[0] = <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>bounds)
    return cnp.PyArray_DIM(<cnp.ndarray>bounds, 0)


cdef inline int64_t stride_of(cnp.ndarray arr, int d, int64_t itemsize) except? -1:
    """The stride of axis d in elements; any stride of an axis of size 0 or 1 reads as 1 (it
    is never used, and numpy may report anything for it)."""
    if cnp.PyArray_DIM(arr, d) <= 1:
        return 1
    cdef int64_t b = cnp.PyArray_STRIDE(arr, d)
    if b % itemsize:
        raise ValueError("strides must be whole elements")
    return b // itemsize


cdef int read_matrix(object x, int typenum, bint writable, bint transposed, int64_t* rows,
                     int64_t* cols, int64_t* row_stride, int64_t* col_stride,
                     char** data, str name) except -1:
    """Describe the 1-D (a column) or 2-D ndarray ``x`` of type ``typenum``, transposed when
    asked (X of X @ W read as Xᵀ)."""
    if not cnp.PyArray_Check(x):
        raise TypeError(f"{name} must be a numpy array")
    cdef cnp.ndarray arr = <cnp.ndarray>x
    cdef int ndim = cnp.PyArray_NDIM(arr)
    cdef int64_t itemsize = cnp.PyArray_ITEMSIZE(arr)
    if ndim != 1 and ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D")
    if cnp.PyArray_TYPE(arr) != typenum or not cnp.PyArray_ISALIGNED(arr) \
            or not cnp.PyArray_ISNOTSWAPPED(arr):
        raise ValueError(f"{name} must be aligned, native-endian, of the product's dtype")
    if writable and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{name} must be writable")
    cdef int64_t r = cnp.PyArray_DIM(arr, 0)
    cdef int64_t c = cnp.PyArray_DIM(arr, 1) if ndim == 2 else 1
    cdef int64_t rs = stride_of(arr, 0, itemsize)
    cdef int64_t cs = stride_of(arr, 1, itemsize) if ndim == 2 else 1
    if transposed and ndim == 2:
        r, c, rs, cs = c, r, cs, rs
    rows[0], cols[0], row_stride[0], col_stride[0] = r, c, rs, cs
    data[0] = <char*>cnp.PyArray_DATA(arr)
    return 0


cdef int read_operands(object b, object c, int typenum, bint transposed, tuple sparse,
                       Dense* dense, Out* out) except -1:
    """Describe B and C, and refuse a C that shares memory with B or a sparse array."""
    cdef char* p
    read_matrix(b, typenum, False, transposed, &dense.rows, &dense.cols, &dense.row_stride,
                &dense.col_stride, &p, "the dense operand")
    dense.data = p
    read_matrix(c, typenum, True, transposed, &out.rows, &out.cols, &out.row_stride,
                &out.col_stride, &p, "out")
    out.data = p
    if out.cols != dense.cols:
        raise ValueError("out does not have the dense operand's width")
    cdef intptr_t lo, hi
    array_bounds(<cnp.ndarray>c, &lo, &hi)
    if overlaps(lo, hi, b):
        raise ValueError("out must not share memory with an input operand")
    for x in sparse:
        if overlaps(lo, hi, x):
            raise ValueError("out must not share memory with an input operand")
    return 0


cdef Config read_config(tuple config) except *:
    """(kernel, backend, nthreads, partition, simd, min_work): the codes of names.hpp. On the
    main thread, the product polls the signal check (Ctrl-C stops it)."""
    cdef Config k
    k.kernel, k.backend, k.nthreads, k.partition, k.simd, k.min_work = config
    k.poll = NULL
    if PyThread_get_thread_ident() == main_thread:
        k.poll = check_signals
    return k


cdef int value_type(object data) except -1:
    cdef int t = vector_type(data, "data") if cnp.PyArray_NDIM(<cnp.ndarray?>data) == 1 \
        else cnp.PyArray_TYPE(<cnp.ndarray>data)
    if t != cnp.NPY_FLOAT and t != cnp.NPY_DOUBLE:
        raise ValueError("stored values must be float32 or float64")
    return t


def csr_product(object indptr, object indices, object data, int64_t rows, int64_t cols,
                bint by_columns, bint check, object b, object c, bint transposed,
                tuple config, object bounds=None, bint transpose_first=False):
    """Write ``A @ B`` into ``c`` for A of ``rows`` x ``cols`` given by CSR arrays.

    ``indptr`` (rows + 1), ``indices`` and ``data``: 1-D contiguous arrays, indptr and indices
    both int32 or both int64, or int64 and uint16 (a prepared matrix); data float32/float64.
    ``by_columns``: the arrays are those of Aᵀ, read by the column-driven kernels (A in CSC,
    or W in CSR for X @ W), or with ``transpose_first`` (and ``check``) transposed into A's CSR
    arrays per call and read by the row-driven ones. ``check``: a user's matrix, checked where it is read (ValueError if
    corrupt). ``b`` and ``c``: B (cols x n) and C (rows x n), 1-D or 2-D, of data's dtype, any
    strides; with ``transposed`` they are X and Y of X @ W, read as Xᵀ and Yᵀ. ``config``:
    (kernel, backend, threads, partition, simd, min_work) codes. ``bounds``: a prepared
    matrix's cached slice bounds (int64), checked in full, or None.
    """
    cdef int tp = vector_type(indptr, "indptr")
    cdef int ti = vector_type(indices, "indices")
    cdef int tv = value_type(data)
    cdef Dense dense
    cdef Out out
    read_operands(b, c, tv, transposed, (indptr, indices, data), &dense, &out)
    cdef int64_t a_rows = cols if by_columns else rows
    cdef int64_t a_cols = rows if by_columns else cols
    if cnp.PyArray_DIM(<cnp.ndarray>indptr, 0) != a_rows + 1 or a_rows < 0 or a_cols < 0:
        raise ValueError(f"indptr must have {a_rows + 1} entries")
    if dense.rows != cols or out.rows != rows:
        raise ValueError("operand shapes do not match")
    cdef Config k = read_config(config)
    cdef int64_t stored = min(cnp.PyArray_DIM(<cnp.ndarray>indices, 0),
                              cnp.PyArray_DIM(<cnp.ndarray>data, 0))
    cdef const int64_t* bp = NULL
    cdef int64_t nb = read_bounds(bounds, &bp)
    cdef void* p = cnp.PyArray_DATA(<cnp.ndarray>indptr)
    cdef void* q = cnp.PyArray_DATA(<cnp.ndarray>indices)
    cdef void* v = cnp.PyArray_DATA(<cnp.ndarray>data)
    cdef bint f32 = tv == cnp.NPY_FLOAT
    if not check and not by_columns and tp == cnp.NPY_INT64 and ti == cnp.NPY_UINT16:
        with nogil:
            if f32:
                c_csr_product(<const int64_t*>p, <const uint16_t*>q, <const float*>v, a_rows,
                              a_cols, stored, by_columns, check, dense, out, k, bp, nb,
                              transpose_first)
            else:
                c_csr_product(<const int64_t*>p, <const uint16_t*>q, <const double*>v, a_rows,
                              a_cols, stored, by_columns, check, dense, out, k, bp, nb,
                              transpose_first)
    elif tp == ti == cnp.NPY_INT32:
        with nogil:
            if f32:
                c_csr_product(<const int32_t*>p, <const int32_t*>q, <const float*>v, a_rows,
                              a_cols, stored, by_columns, check, dense, out, k, bp, nb,
                              transpose_first)
            else:
                c_csr_product(<const int32_t*>p, <const int32_t*>q, <const double*>v, a_rows,
                              a_cols, stored, by_columns, check, dense, out, k, bp, nb,
                              transpose_first)
    elif tp == ti == cnp.NPY_INT64:
        with nogil:
            if f32:
                c_csr_product(<const int64_t*>p, <const int64_t*>q, <const float*>v, a_rows,
                              a_cols, stored, by_columns, check, dense, out, k, bp, nb,
                              transpose_first)
            else:
                c_csr_product(<const int64_t*>p, <const int64_t*>q, <const double*>v, a_rows,
                              a_cols, stored, by_columns, check, dense, out, k, bp, nb,
                              transpose_first)
    else:
        raise ValueError("indptr and indices must both be int32 or both int64")
    return c


# --------------------------------------------------------------------------------------------
# Reduced-precision values of a prepared matrix (include/spmm/formats/values.hpp): bfloat16 as
# its bits (uint16), float16, int8 with one float32 scale per output. The format's code is its
# position in the vocabulary's "values" list; X, B and the result are float32.

cdef int reduced_values(object values, int format, object scale, int64_t outputs,
                        const void** data, const float** scale_data) except -1:
    """Check a reduced form's values (1-D, contiguous, of the format's storage dtype) and its
    scales (int8: ``outputs`` float32 values; the others: None)."""
    cdef int t = vector_type(values, "values")
    cdef int want = (cnp.NPY_UINT16 if format == 1 else cnp.NPY_FLOAT16 if format == 2
                     else cnp.NPY_INT8 if format == 3 else -1)
    if t != want:
        raise ValueError(f"values of stored format {format} must be "
                         "uint16 (bfloat16 bits), float16 or int8 respectively")
    data[0] = cnp.PyArray_DATA(<cnp.ndarray>values)
    scale_data[0] = NULL
    if format == 3:
        if scale is None or vector_type(scale, "scale") != cnp.NPY_FLOAT \
                or cnp.PyArray_DIM(<cnp.ndarray>scale, 0) != outputs:
            raise ValueError(f"int8 values need {outputs} float32 scales")
        scale_data[0] = <const float*>cnp.PyArray_DATA(<cnp.ndarray>scale)
    elif scale is not None:
        raise ValueError("only int8 values have scales")
    return 0


def reduced_csr_product(object indptr, object indices, object values, int format,
                        object scale, int64_t rows, int64_t cols, object b, object c,
                        bint transposed, tuple config, object bounds=None):
    """Write ``A @ B`` into ``c`` for a prepared matrix A (``rows`` x ``cols``, CSR) whose
    values are stored in a reduced ``format`` (code of the vocabulary's ``"values"``).

    ``indptr`` and ``indices``: int64 and uint16, or both int32, or both int64, as
    :func:`csr_product` takes a prepared matrix's; ``values``: as many entries as
    ``indices``; ``scale``: int8 only, ``rows`` float32 values (row i's sum is scaled by
    ``scale[i]``), else None. ``b``, ``c``: float32, as for :func:`csr_product`, with
    ``transposed`` for X @ W. The arrays are trusted (a prepared matrix's, checked when it was
    made); their lengths are checked here.
    """
    cdef int tp = vector_type(indptr, "indptr")
    cdef int ti = vector_type(indices, "indices")
    cdef const void* v
    cdef const float* sp
    reduced_values(values, format, scale, rows, &v, &sp)
    cdef Dense dense
    cdef Out out
    read_operands(b, c, cnp.NPY_FLOAT, transposed, (indptr, indices, values), &dense, &out)
    if cnp.PyArray_DIM(<cnp.ndarray>indptr, 0) != rows + 1 or rows < 0 or cols < 0:
        raise ValueError(f"indptr must have {rows + 1} entries")
    if cnp.PyArray_DIM(<cnp.ndarray>indices, 0) != cnp.PyArray_DIM(<cnp.ndarray>values, 0):
        raise ValueError("indices and values must be equally long")
    if dense.rows != cols or out.rows != rows:
        raise ValueError("operand shapes do not match")
    cdef Config k = read_config(config)
    cdef const int64_t* bp = NULL
    cdef int64_t nb = read_bounds(bounds, &bp)
    cdef void* p = cnp.PyArray_DATA(<cnp.ndarray>indptr)
    cdef void* q = cnp.PyArray_DATA(<cnp.ndarray>indices)
    if tp == cnp.NPY_INT64 and ti == cnp.NPY_UINT16:
        with nogil:
            c_reduced_csr_product(<const int64_t*>p, <const uint16_t*>q, v, format, sp, rows,
                                  cols, dense, out, k, bp, nb)
    elif tp == ti == cnp.NPY_INT32:
        with nogil:
            c_reduced_csr_product(<const int32_t*>p, <const int32_t*>q, v, format, sp, rows,
                                  cols, dense, out, k, bp, nb)
    elif tp == ti == cnp.NPY_INT64:
        with nogil:
            c_reduced_csr_product(<const int64_t*>p, <const int64_t*>q, v, format, sp, rows,
                                  cols, dense, out, k, bp, nb)
    else:
        raise ValueError("indptr and indices must be int64 and uint16, or both int32 or int64")
    return c


def activations_product(object ptr, object block, object words, object scale,
                        object correction, int format, int64_t rows, int64_t cols, object b,
                        object c, bint transposed, tuple config):
    """Write ``W @ B`` into ``c`` for a prepared matrix with activations: ``W`` (``rows`` x
    ``cols``) in grouped rows (``ptr``: ``rows + 1`` int64; ``block``: int32 and ``words``:
    uint32, ``ptr[rows]`` each; for int8 (``format``, the vocabulary's code) ``scale``:
    ``rows`` float32 and ``correction``: ``rows`` int32, else None), ``B`` rounded to the
    format here. ``b``, ``c``: float32, as for :func:`csr_product`, with ``transposed`` for
    X @ W. The arrays are trusted (built by prepare); their types and lengths are checked."""
    if vector_type(ptr, "ptr") != cnp.NPY_INT64 or cnp.PyArray_DIM(<cnp.ndarray>ptr, 0) != rows + 1:
        raise ValueError(f"ptr must be {rows + 1} int64 values")
    cdef int64_t groups = (<const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>ptr))[rows]
    if (vector_type(block, "block") != cnp.NPY_INT32 or vector_type(words, "words") != cnp.NPY_UINT32
            or cnp.PyArray_DIM(<cnp.ndarray>block, 0) != groups
            or cnp.PyArray_DIM(<cnp.ndarray>words, 0) != groups):
        raise ValueError(f"block and words must be {groups} int32 and uint32 values")
    cdef const float* sp = NULL
    cdef const int32_t* cp = NULL
    if scale is not None:
        if vector_type(scale, "scale") != cnp.NPY_FLOAT or cnp.PyArray_DIM(<cnp.ndarray>scale, 0) != rows:
            raise ValueError(f"scale must be {rows} float32 values")
        if (vector_type(correction, "correction") != cnp.NPY_INT32
                or cnp.PyArray_DIM(<cnp.ndarray>correction, 0) != rows):
            raise ValueError(f"correction must be {rows} int32 values")
        sp = <const float*>cnp.PyArray_DATA(<cnp.ndarray>scale)
        cp = <const int32_t*>cnp.PyArray_DATA(<cnp.ndarray>correction)
    cdef Dense dense
    cdef Out out
    read_operands(b, c, cnp.NPY_FLOAT, transposed, (ptr, block, words), &dense, &out)
    if dense.rows != cols or out.rows != rows:
        raise ValueError("operand shapes do not match")
    cdef Config k = read_config(config)
    cdef const int64_t* p = <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>ptr)
    cdef const int32_t* q = <const int32_t*>cnp.PyArray_DATA(<cnp.ndarray>block)
    cdef const uint32_t* w = <const uint32_t*>cnp.PyArray_DATA(<cnp.ndarray>words)
    with nogil:
        c_activations_product(p, q, w, sp, cp, format, rows, cols, dense, out, k)
    return c


def activations_body(int format, int simd):
    """What an activations product runs at a SIMD level (codes of names.hpp): ``(body,
    level)``, e.g. ``("dot", "avx512_vnni")``, or ``("portable_dot", "scalar")``."""
    body, level = c_activations_body(format, simd)
    return body.decode(), level.decode()


def coo_product(object row, object col, object data, int64_t rows, int64_t cols, object b,
                object c, bint transposed, tuple config):
    """Write ``A @ B`` into ``c`` for A (rows x cols) in COO: ``row``, ``col`` (both int32 or
    both int64) and ``data``, equally long. For X @ W pass Wᵀ's view (row and col swapped,
    shape swapped) with ``transposed``. Coordinates are checked where they are read."""
    cdef int tr = vector_type(row, "row")
    cdef int tc = vector_type(col, "col")
    cdef int tv = value_type(data)
    cdef Dense dense
    cdef Out out
    read_operands(b, c, tv, transposed, (row, col, data), &dense, &out)
    cdef int64_t nnz = cnp.PyArray_DIM(<cnp.ndarray>data, 0)
    if cnp.PyArray_DIM(<cnp.ndarray>row, 0) != nnz or cnp.PyArray_DIM(<cnp.ndarray>col, 0) != nnz:
        raise ValueError("COO coordinates and data must be equally long")
    if dense.rows != cols or out.rows != rows:
        raise ValueError("operand shapes do not match")
    cdef Config k = read_config(config)
    cdef void* p = cnp.PyArray_DATA(<cnp.ndarray>row)
    cdef void* q = cnp.PyArray_DATA(<cnp.ndarray>col)
    cdef void* v = cnp.PyArray_DATA(<cnp.ndarray>data)
    cdef bint f32 = tv == cnp.NPY_FLOAT
    if tr == tc == cnp.NPY_INT32:
        with nogil:
            if f32:
                c_coo_product(<const int32_t*>p, <const int32_t*>q, <const float*>v, nnz, rows, cols, transposed, dense, out, k)
            else:
                c_coo_product(<const int32_t*>p, <const int32_t*>q, <const double*>v, nnz, rows, cols, transposed, dense, out, k)
    elif tr == tc == cnp.NPY_INT64:
        with nogil:
            if f32:
                c_coo_product(<const int64_t*>p, <const int64_t*>q, <const float*>v, nnz, rows, cols, transposed, dense, out, k)
            else:
                c_coo_product(<const int64_t*>p, <const int64_t*>q, <const double*>v, nnz, rows, cols, transposed, dense, out, k)
    else:
        raise ValueError("COO coordinates must both be int32 or both int64")
    return c


def bsr_product(object indptr, object indices, object data, int64_t rows, int64_t cols,
                bint by_columns, object b, object c, bint transposed, tuple config):
    """Write ``A @ B`` (or, ``by_columns``, ``Aᵀ @ B``) into ``c`` for A (rows x cols) in BSR:
    ``indptr`` and ``indices`` (both int32 or both int64) over blocks, ``data`` of shape
    (blocks, r, c), C-contiguous. Block pointers and indices are checked where read."""
    cdef int tp = vector_type(indptr, "indptr")
    cdef int ti = vector_type(indices, "indices")
    if not cnp.PyArray_Check(data) or cnp.PyArray_NDIM(<cnp.ndarray>data) != 3 or \
            not cnp.PyArray_CHKFLAGS(<cnp.ndarray>data, cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_ALIGNED):
        raise ValueError("BSR data must be a C-contiguous 3-D array")
    cdef int tv = value_type(data)
    cdef int64_t r = cnp.PyArray_DIM(<cnp.ndarray>data, 1)
    cdef int64_t cw = cnp.PyArray_DIM(<cnp.ndarray>data, 2)
    if r < 1 or cw < 1 or rows % r or cols % cw:
        raise ValueError(f"BSR blocks of {r} x {cw} do not tile a {rows} x {cols} matrix")
    cdef int64_t block_rows = rows // r, block_cols = cols // cw
    if cnp.PyArray_DIM(<cnp.ndarray>indptr, 0) != block_rows + 1:
        raise ValueError(f"BSR indptr must have {block_rows + 1} entries")
    cdef Dense dense
    cdef Out out
    read_operands(b, c, tv, transposed, (indptr, indices, data), &dense, &out)
    if dense.rows != (rows if by_columns else cols) or out.rows != (cols if by_columns else rows):
        raise ValueError("operand shapes do not match")
    cdef Config k = read_config(config)
    cdef int64_t stored = min(cnp.PyArray_DIM(<cnp.ndarray>indices, 0),
                              cnp.PyArray_DIM(<cnp.ndarray>data, 0))
    cdef void* p = cnp.PyArray_DATA(<cnp.ndarray>indptr)
    cdef void* q = cnp.PyArray_DATA(<cnp.ndarray>indices)
    cdef void* v = cnp.PyArray_DATA(<cnp.ndarray>data)
    cdef bint f32 = tv == cnp.NPY_FLOAT
    if tp == ti == cnp.NPY_INT32:
        with nogil:
            if f32:
                c_bsr_product(<const int32_t*>p, <const int32_t*>q, <const float*>v, block_rows,
                              block_cols, r, cw, stored, by_columns, dense, out, k)
            else:
                c_bsr_product(<const int32_t*>p, <const int32_t*>q, <const double*>v, block_rows,
                              block_cols, r, cw, stored, by_columns, dense, out, k)
    elif tp == ti == cnp.NPY_INT64:
        with nogil:
            if f32:
                c_bsr_product(<const int64_t*>p, <const int64_t*>q, <const float*>v, block_rows,
                              block_cols, r, cw, stored, by_columns, dense, out, k)
            else:
                c_bsr_product(<const int64_t*>p, <const int64_t*>q, <const double*>v, block_rows,
                              block_cols, r, cw, stored, by_columns, dense, out, k)
    else:
        raise ValueError("BSR indptr and indices must both be int32 or both int64")
    return c


def dia_product(object offsets, object data, int64_t rows, int64_t cols, bint dia_transposed,
                object b, object c, bint transposed, tuple config):
    """Write ``A @ B`` (or, ``dia_transposed``, ``Aᵀ @ B``) into ``c`` for A (rows x cols) in
    DIA: ``offsets`` (int64, one per diagonal) and ``data`` (diagonals x width, C-contiguous,
    scipy's layout). Any offset is valid; entries outside the matrix do not exist."""
    if vector_type(offsets, "offsets") != cnp.NPY_INT64:
        raise ValueError("DIA offsets must be int64")
    if not cnp.PyArray_Check(data) or cnp.PyArray_NDIM(<cnp.ndarray>data) != 2 or \
            not cnp.PyArray_CHKFLAGS(<cnp.ndarray>data, cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_ALIGNED):
        raise ValueError("DIA data must be a C-contiguous 2-D array")
    cdef int tv = value_type(data)
    cdef int64_t diagonals = cnp.PyArray_DIM(<cnp.ndarray>data, 0)
    cdef int64_t width = cnp.PyArray_DIM(<cnp.ndarray>data, 1)
    if cnp.PyArray_DIM(<cnp.ndarray>offsets, 0) != diagonals:
        raise ValueError(f"DIA has {cnp.PyArray_DIM(<cnp.ndarray>offsets, 0)} offsets for "
                         f"{diagonals} diagonals")
    cdef Dense dense
    cdef Out out
    read_operands(b, c, tv, transposed, (offsets, data), &dense, &out)
    if dense.rows != (rows if dia_transposed else cols) or \
            out.rows != (cols if dia_transposed else rows):
        raise ValueError("operand shapes do not match")
    cdef Config k = read_config(config)
    cdef const int64_t* o = <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>offsets)
    cdef void* v = cnp.PyArray_DATA(<cnp.ndarray>data)
    with nogil:
        if tv == cnp.NPY_FLOAT:
            c_dia_product(o, <const float*>v, diagonals, width, width, rows, cols,
                          dia_transposed, dense, out, k)
        else:
            c_dia_product(o, <const double*>v, diagonals, width, width, rows, cols,
                          dia_transposed, dense, out, k)
    return c



# --------------------------------------------------------------------------------------------
# The one-column layout of a prepared matrix (include/spmm/formats/sliced.hpp, spmm/_sliced.py).

cdef int sliced_arrays(object slice_ptr, object lens, object perm, object indices,
                       object values, int64_t rows) except -1:
    """Check a sliced layout's array types and lengths (their contents are the prepared
    matrix's, built from its checked CSR arrays)."""
    cdef int64_t slices = (rows + 15) // 16
    if vector_type(slice_ptr, "slice_ptr") != cnp.NPY_INT64 \
            or cnp.PyArray_DIM(<cnp.ndarray>slice_ptr, 0) != slices + 1:
        raise ValueError(f"slice_ptr must be {slices + 1} int64 values")
    for name, x in (("lens", lens), ("perm", perm)):
        if vector_type(x, name) != cnp.NPY_INT32 or cnp.PyArray_DIM(<cnp.ndarray>x, 0) != rows:
            raise ValueError(f"{name} must be {rows} int32 values")
    vector_type(indices, "indices")
    vector_type(values, "values")
    cdef int64_t stored = (<const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>slice_ptr))[slices]
    if cnp.PyArray_DIM(<cnp.ndarray>indices, 0) != stored \
            or cnp.PyArray_DIM(<cnp.ndarray>values, 0) != stored:
        raise ValueError(f"indices and values must hold {stored} entries")
    return 0


def sliced_product(object slice_ptr, object lens, object perm, object indices, object values,
                   int format, object scale, int64_t rows, int64_t cols, object b, object c,
                   bint transposed, tuple config):
    """Write ``A @ b`` into ``c`` for A (``rows`` x ``cols``) in the one-column sliced layout:
    ``b`` holds one dense column (x of x @ W, with ``transposed``), ``c`` the result.

    ``indices``: uint16, int32 or int64; ``values``: float32 or float64 with ``format`` 0 (the
    product's dtype), or a reduced format's storage (``format`` its code, the product float32;
    int8 with ``rows`` float32 ``scale``, in the rows' own order).
    """
    sliced_arrays(slice_ptr, lens, perm, indices, values, rows)
    cdef int ti = vector_type(indices, "indices")
    cdef const void* v
    cdef const float* sp = NULL
    cdef int tv
    if format == 0:
        tv = value_type(values)
        if scale is not None:
            raise ValueError("only int8 values have scales")
    else:
        tv = cnp.NPY_FLOAT
        reduced_values(values, format, scale, rows, &v, &sp)
    v = cnp.PyArray_DATA(<cnp.ndarray>values)
    cdef Dense dense
    cdef Out out
    read_operands(b, c, tv, transposed, (slice_ptr, lens, perm, indices, values), &dense, &out)
    if dense.rows != cols or out.rows != rows or dense.cols != 1:
        raise ValueError("operand shapes do not match")
    cdef Config k = read_config(config)
    cdef const int64_t* ptr = <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>slice_ptr)
    cdef const int32_t* ln = <const int32_t*>cnp.PyArray_DATA(<cnp.ndarray>lens)
    cdef const int32_t* pm = <const int32_t*>cnp.PyArray_DATA(<cnp.ndarray>perm)
    cdef void* q = cnp.PyArray_DATA(<cnp.ndarray>indices)
    cdef bint f64 = tv == cnp.NPY_DOUBLE
    cdef int index_bytes = (2 if ti == cnp.NPY_UINT16 else 4 if ti == cnp.NPY_INT32
                            else 8 if ti == cnp.NPY_INT64 else 0)
    if index_bytes == 0:
        raise ValueError("indices must be uint16, int32 or int64")
    with nogil:
        c_sliced_product(ptr, ln, pm, q, index_bytes, v, format, f64, sp, rows, cols, dense,
                         out, k)
    return c


def build_sliced(object indptr, object indices, object values, object perm, object lens,
                 object slice_ptr, object out_indices, object out_values):
    """Fill ``out_indices`` and ``out_values`` (the sliced layout's entries) from CSR arrays
    (int64 and uint16, or both int32, or both int64; values of any 1, 2, 4 or 8 byte dtype,
    moved as they are), given the layout's ``perm``, ``lens`` and ``slice_ptr``."""
    cdef int64_t rows = cnp.PyArray_DIM(<cnp.ndarray>indptr, 0) - 1
    sliced_arrays(slice_ptr, lens, perm, out_indices, out_values, rows)
    cdef int tp = vector_type(indptr, "indptr")
    cdef int ti = vector_type(indices, "indices")
    vector_type(values, "values")
    if vector_type(out_indices, "out_indices") != ti \
            or cnp.PyArray_ITEMSIZE(<cnp.ndarray>out_values) \
            != cnp.PyArray_ITEMSIZE(<cnp.ndarray>values) \
            or cnp.PyArray_DIM(<cnp.ndarray>values, 0) != cnp.PyArray_DIM(<cnp.ndarray>indices, 0) \
            or cnp.PyArray_DIM(<cnp.ndarray>out_values, 0) != cnp.PyArray_DIM(<cnp.ndarray>values, 0):
        raise ValueError("the sliced entries must match the CSR entries in count and types")
    cdef int vb = <int>cnp.PyArray_ITEMSIZE(<cnp.ndarray>values)
    cdef const int64_t* ptr = <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>slice_ptr)
    cdef const int32_t* ln = <const int32_t*>cnp.PyArray_DATA(<cnp.ndarray>lens)
    cdef const int32_t* pm = <const int32_t*>cnp.PyArray_DATA(<cnp.ndarray>perm)
    cdef void* p = cnp.PyArray_DATA(<cnp.ndarray>indptr)
    cdef void* q = cnp.PyArray_DATA(<cnp.ndarray>indices)
    cdef void* v = cnp.PyArray_DATA(<cnp.ndarray>values)
    cdef void* oq = cnp.PyArray_DATA(<cnp.ndarray>out_indices)
    cdef void* ov = cnp.PyArray_DATA(<cnp.ndarray>out_values)
    if tp == cnp.NPY_INT64 and ti == cnp.NPY_UINT16:
        with nogil:
            c_build_sliced(<const int64_t*>p, <const uint16_t*>q, v, vb, rows, pm, ln, ptr,
                           <uint16_t*>oq, ov)
    elif tp == ti == cnp.NPY_INT32:
        with nogil:
            c_build_sliced(<const int32_t*>p, <const int32_t*>q, v, vb, rows, pm, ln, ptr,
                           <int32_t*>oq, ov)
    elif tp == ti == cnp.NPY_INT64:
        with nogil:
            c_build_sliced(<const int64_t*>p, <const int64_t*>q, v, vb, rows, pm, ln, ptr,
                           <int64_t*>oq, ov)
    else:
        raise ValueError("indptr and indices must be int64 and uint16, or both int32 or int64")


def kernel_body(int family, int kernel, int simd):
    """What the registry runs for a kernel family, variant and SIMD level (codes of
    names.hpp): ``(body, level)``, e.g. ``("tiled", "avx512")``."""
    body, level = c_kernel_body(family, kernel, simd)
    return body.decode(), level.decode()


def threads_used(int64_t entries, int64_t out_rows, int64_t n, int backend, int nthreads,
                 int64_t min_work):
    """The threads a product of ``entries`` multiply-adds per dense column, ``out_rows`` output
    rows and ``n`` dense columns uses: 1 below the minimum work, as every driver decides."""
    return c_threads_used(entries, out_rows, n, backend, nthreads, min_work)


def splits_columns(int64_t out_rows, int64_t n, int nthreads, bint rows_contiguous,
                   int itemsize):
    """Whether a column-driven product splits the dense columns among its threads (else A's
    entries, each thread with a private output summed at the end)."""
    return c_splits_columns(out_rows, n, nthreads, rows_contiguous, itemsize)


def max_group():
    """The largest N:M group ``m`` (its offsets are stored in one byte)."""
    return int(c_max_group())


def cache_line_bytes():
    """Bytes of a cache line: what copies the kernels read are aligned and padded to."""
    return int(c_cache_line_bytes())


# The value types a float LIL holds (scipy stores Python floats and numpy scalars), each
# converted to a C double by numpy's or CPython's own code: no user code runs while a LIL's
# lists are read.
cdef tuple LIL_VALUE_TYPES = (float, numpy.float64, numpy.float32)


def lil_arrays(list rows, list values, int64_t cols, bint single):
    """CSR arrays (indptr and indices int64, data float32 if ``single`` else float64) of a
    float LIL matrix whose ``rows`` and ``data`` lists (one list per row) are ``rows`` and
    ``values``, read as scipy's ``tocsr`` reads them but at C speed; or None when anything is
    not the common case (a row not a list, lists of unequal length, a column not a Python int
    in [0, cols), a value not a float or numpy float): the caller then checks and converts the
    matrix in Python, which names what is wrong or does what scipy does.
    """
    cdef Py_ssize_t nrows = len(rows), i, j, length, total = 0, p = 0
    cdef object row, row_values, column, value
    if len(values) != nrows:
        return None
    for i in range(nrows):
        row, row_values = rows[i], values[i]
        if type(row) is not list or type(row_values) is not list:
            return None
        length = len(<list>row)
        if len(<list>row_values) != length:
            return None
        total += length
    indptr = cnp.PyArray_EMPTY(1, [nrows + 1], cnp.NPY_INT64, 0)
    indices = cnp.PyArray_EMPTY(1, [total], cnp.NPY_INT64, 0)
    data = cnp.PyArray_EMPTY(1, [total], cnp.NPY_FLOAT if single else cnp.NPY_DOUBLE, 0)
    cdef int64_t* ptr = <int64_t*>cnp.PyArray_DATA(<cnp.ndarray>indptr)
    cdef int64_t* idx = <int64_t*>cnp.PyArray_DATA(<cnp.ndarray>indices)
    cdef float* single_values = <float*>cnp.PyArray_DATA(<cnp.ndarray>data)
    cdef double* double_values = <double*>cnp.PyArray_DATA(<cnp.ndarray>data)
    cdef int64_t c
    cdef double x
    ptr[0] = 0
    for i in range(nrows):
        row, row_values = rows[i], values[i]
        length = len(<list>row)
        if p + length > total or len(<list>row_values) != length:
            return None  # (cannot change between the passes: nothing here runs user code)
        for j in range(length):
            column, value = (<list>row)[j], (<list>row_values)[j]
            if type(column) is not int or type(value) not in LIL_VALUE_TYPES:
                return None
            try:
                c = column
            except OverflowError:
                return None
            if c < 0 or c >= cols:
                return None
            x = value
            idx[p] = c
            if single:
                single_values[p] = <float>x
            else:
                double_values[p] = x
            p += 1
        ptr[i + 1] = p
    return indptr, indices, data


cdef inline object environment_value(const char* name):
    cdef const char* value = getenv(name)
    return None if value == NULL else <bytes>value


def environment_values(bytes backend, bytes num_threads, bytes kernel, bytes simd):
    """The values (bytes, or None when unset) of the four configuration variables, named by
    the arguments, as the C runtime holds them.

    Assignments to ``os.environ`` write through to the C runtime (``putenv``), so these tell
    whether the variables changed since they were last parsed, for a tenth of the cost of
    ``os.environ.get`` (which encodes the name and raises KeyError for an unset variable).
    """
    return (environment_value(backend), environment_value(num_threads),
            environment_value(kernel), environment_value(simd))


cdef int strided_operands(value_t[:, :] y, const value_t[:, :] x, int64_t rows,
                          int64_t cols) except -1:
    """Check that X is batch x rows and Y batch x cols, that X's strides and Y's row stride
    are whole elements and that Y's columns are contiguous (the structured kernels' layout)."""
    cdef Py_ssize_t size = sizeof(value_t)
    if x.shape[1] != rows or y.shape[0] != x.shape[0] or y.shape[1] != cols:
        raise ValueError(f"structured product: X is {x.shape[0]} x {x.shape[1]} and Y "
                         f"{y.shape[0]} x {y.shape[1]}, for W of {rows} x {cols}")
    if (x.strides[0] % size or x.strides[1] % size or y.strides[0] % size
            or y.strides[1] != size and y.shape[1] > 1):
        raise ValueError("structured product: strides must be whole elements and Y's columns "
                         "contiguous")
    return 0


def panels_times_dense(int64_t rows, int64_t cols, int64_t width, int64_t run,
                       const int64_t[::1] unit_ptr, const int32_t[::1] unit_row,
                       const value_t[:, ::1] values, const value_t[:, :] x, value_t[:, :] y,
                       tuple config):
    """Y = X W for W in the column-tile layout (``spmm/_layouts.py``;
    ``include/spmm/formats/structured.hpp``); ``config`` as for :func:`csr_product`.

    ``values`` holds the panel rows (``ld`` = its number of columns); ``x`` is batch x rows
    with any strides (multiples of its item size), ``y`` batch x cols with unit column stride.
    The sizes that bound every access are checked here; the contents of ``unit_ptr`` and
    ``unit_row`` (non-decreasing, in range) hold by construction: ``spmm._layouts.build``
    makes them from a checked CSR matrix, also when a prepared matrix is unpickled.
    """
    strided_operands(y, x, rows, cols)
    cdef Py_ssize_t size = sizeof(value_t)
    cdef int64_t tiles = (cols + width - 1) // width if width > 0 else -1
    cdef int64_t vector = c_cache_line_bytes() // size  # panel rows are padded to a line
    if (width < 1 or run < 1 or unit_ptr.shape[0] != tiles + 1
            or values.shape[1] < (width + vector - 1) // vector * vector
            or values.shape[0] != unit_row.shape[0] * run):
        raise ValueError("panels_times_dense: the layout's arrays do not fit its shape")
    cdef const int32_t* rows_ptr = &unit_row[0] if unit_row.shape[0] > 0 else NULL
    cdef const value_t* values_ptr = &values[0, 0] if values.shape[0] > 0 else NULL
    cdef const value_t* x_ptr = &x[0, 0] if x.shape[0] > 0 and x.shape[1] > 0 else NULL
    cdef value_t* y_ptr = &y[0, 0] if y.shape[0] > 0 and y.shape[1] > 0 else NULL
    cdef Config k = read_config(config)
    with nogil:
        c_panels_times_dense(rows, cols, width, values.shape[1], run, &unit_ptr[0], rows_ptr,
                             values_ptr, x_ptr, x.shape[0], x.strides[0] // size,
                             x.strides[1] // size, y_ptr, y.strides[0] // size, k)


def nm_times_dense(int64_t rows, int64_t cols, int64_t n, int64_t m,
                   const value_t[:, :, ::1] values, const uint8_t[:, :, ::1] offsets,
                   const value_t[:, :] x, value_t[:, :] y, tuple config):
    """Y = X W for W with N:M sparsity (``spmm/_layouts.py``; NmView in
    ``include/spmm/formats/structured.hpp``); ``config`` as for :func:`csr_product`.

    ``values`` and ``offsets`` are chunks x (groups * n) x chunk; ``x`` and ``y`` as for
    :func:`panels_times_dense`.
    """
    strided_operands(y, x, rows, cols)
    cdef int64_t chunk = values.shape[2]
    cdef int64_t groups = (rows + m - 1) // m if m > 0 else -1
    if (values.shape[0] != offsets.shape[0] or values.shape[1] != offsets.shape[1]
            or values.shape[2] != offsets.shape[2] or chunk < 64 or chunk % 64
            or values.shape[0] != (cols + chunk - 1) // chunk or m < 1 or m > c_max_group()
            or n < 0 or n > m or values.shape[1] != groups * n):
        raise ValueError("nm_times_dense: the layout's arrays do not fit its shape")
    cdef Py_ssize_t size = sizeof(value_t)
    cdef const value_t* values_ptr = NULL
    cdef const uint8_t* offsets_ptr = NULL
    if values.shape[0] > 0 and values.shape[1] > 0:
        values_ptr = &values[0, 0, 0]
        offsets_ptr = &offsets[0, 0, 0]
    cdef const value_t* x_ptr = &x[0, 0] if x.shape[0] > 0 and x.shape[1] > 0 else NULL
    cdef value_t* y_ptr = &y[0, 0] if y.shape[0] > 0 and y.shape[1] > 0 else NULL
    cdef Config k = read_config(config)
    with nogil:
        c_nm_times_dense(rows, cols, n, m, values.shape[2], values_ptr, offsets_ptr, x_ptr,
                         x.shape[0], x.strides[0] // size, x.strides[1] // size, y_ptr,
                         y.strides[0] // size, k)


cdef const float* structured_operands(object values, int format, object scale, object x,
                                      object y, int64_t rows, int64_t cols, const void** data,
                                      int64_t* strides) except? NULL:
    """Check a reduced structured product's values and scales (as :func:`reduced_values`),
    X (batch x rows, float32, any whole-element strides) and Y (batch x cols, float32, unit
    column stride); strides: X's row and column strides and Y's row stride, in elements."""
    cdef const float* scale_data
    if not cnp.PyArray_Check(values) or not cnp.PyArray_CHKFLAGS(
            <cnp.ndarray>values, cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_ALIGNED):
        raise ValueError("values must be a C-contiguous array")
    reduced_values(values.reshape(-1), format, scale, cols, data, &scale_data)
    data[0] = cnp.PyArray_DATA(<cnp.ndarray>values)
    cdef const float[:, :] xv = x
    cdef float[:, :] yv = y
    strided_operands(yv, xv, rows, cols)
    strides[0] = xv.strides[0] // 4
    strides[1] = xv.strides[1] // 4
    strides[2] = yv.strides[0] // 4
    return scale_data


def reduced_panels_times_dense(int64_t rows, int64_t cols, int64_t width, int64_t run,
                               const int64_t[::1] unit_ptr, const int32_t[::1] unit_row,
                               object values, int format, object scale, object x, object y,
                               tuple config):
    """:func:`panels_times_dense` for reduced values (``format``: the vocabulary's code;
    ``values``: units * run rows of ``ld`` elements of its storage dtype, C-contiguous;
    ``scale``: int8 only, ``cols`` float32 values, else None); X and Y float32."""
    cdef const void* v
    cdef int64_t strides[3]
    cdef const float* sp = structured_operands(values, format, scale, x, y, rows, cols, &v,
                                               strides)
    cdef int64_t tiles = (cols + width - 1) // width if width > 0 else -1
    # Panel rows are padded to whole float32 registers of the widest level (the values are
    # widened to float32 lanes), spmm._layouts.build.
    cdef int64_t vector = c_cache_line_bytes() // 4
    if (values.ndim != 2 or width < 1 or run < 1 or unit_ptr.shape[0] != tiles + 1
            or values.shape[1] < (width + vector - 1) // vector * vector
            or values.shape[0] != unit_row.shape[0] * run):
        raise ValueError("reduced_panels_times_dense: the layout's arrays do not fit its shape")
    cdef const int32_t* rows_ptr = &unit_row[0] if unit_row.shape[0] > 0 else NULL
    cdef int64_t ld = values.shape[1]
    cdef const float[:, :] xv = x
    cdef float[:, :] yv = y
    cdef const float* x_ptr = &xv[0, 0] if xv.shape[0] > 0 and xv.shape[1] > 0 else NULL
    cdef float* y_ptr = &yv[0, 0] if yv.shape[0] > 0 and yv.shape[1] > 0 else NULL
    cdef Config k = read_config(config)
    with nogil:
        c_reduced_panels_times_dense(rows, cols, width, ld, run, &unit_ptr[0], rows_ptr, v,
                                     format, sp, x_ptr, xv.shape[0], strides[0], strides[1],
                                     y_ptr, strides[2], k)


def reduced_nm_times_dense(int64_t rows, int64_t cols, int64_t n, int64_t m, object values,
                           int format, object scale, const uint8_t[:, :, ::1] offsets, object x,
                           object y, tuple config):
    """:func:`nm_times_dense` for reduced values (``format``, ``values`` and ``scale`` as for
    :func:`reduced_panels_times_dense`; values chunks x (groups * n) x chunk); X and Y
    float32."""
    cdef const void* v
    cdef int64_t strides[3]
    cdef const float* sp = structured_operands(values, format, scale, x, y, rows, cols, &v,
                                               strides)
    cdef int64_t chunk = offsets.shape[2]
    cdef int64_t groups = (rows + m - 1) // m if m > 0 else -1
    if (values.ndim != 3 or tuple(values.shape) != (offsets.shape[0], offsets.shape[1], chunk)
            or chunk < 64 or chunk % 64 or offsets.shape[0] != (cols + chunk - 1) // chunk
            or m < 1 or m > c_max_group() or n < 0 or n > m or offsets.shape[1] != groups * n):
        raise ValueError("reduced_nm_times_dense: the layout's arrays do not fit its shape")
    cdef const uint8_t* offsets_ptr = NULL
    if offsets.shape[0] > 0 and offsets.shape[1] > 0:
        offsets_ptr = &offsets[0, 0, 0]
    cdef const float[:, :] xv = x
    cdef float[:, :] yv = y
    cdef const float* x_ptr = &xv[0, 0] if xv.shape[0] > 0 and xv.shape[1] > 0 else NULL
    cdef float* y_ptr = &yv[0, 0] if yv.shape[0] > 0 and yv.shape[1] > 0 else NULL
    cdef Config k = read_config(config)
    with nogil:
        c_reduced_nm_times_dense(rows, cols, n, m, chunk, v, format, sp, offsets_ptr, x_ptr,
                                 xv.shape[0], strides[0], strides[1], y_ptr, strides[2], k)


def affinity_cpus():
    """The number of CPUs in this process's affinity mask, or 0 where it cannot be read
    cheaply (not Linux, or more CPUs than a ``cpu_set_t`` holds)."""
    return c_affinity_cpus()


def l2_cache_bytes():
    """The L2 cache size, in bytes, the kernels size their passes over the dense operand by:
    read from the system (``sysconf``, else sysfs), else a fallback; or a test's value."""
    return int(c_l2_bytes())


def l2_cache_source():
    """Where :func:`l2_cache_bytes` comes from: ``"sysconf"``, ``"sysfs"``, ``"fallback"`` or
    ``"test"``."""
    return c_l2_source().decode()


def set_l2_cache_bytes(int64_t value):
    """Make the kernels plan for an L2 of ``value`` bytes (0: the system's again). For tests:
    spmm._testing.l2_cache_bytes."""
    c_set_l2_bytes(value)


def set_private_outputs_max_bytes(int64_t value):
    """Make column-driven products split the dense columns once private outputs would take
    more than ``value`` bytes (negative: the built-in limit again). For tests:
    spmm._testing.private_outputs_max_bytes."""
    c_set_private_outputs_max_bytes(value)


def parallel_min_work():
    """The work, (stored entries + rows) x dense columns, below which a product runs on the
    calling thread whatever the backend (``kParallelMinWork`` in product.hpp)."""
    return int(c_parallel_min_work())


def sliced_work_columns():
    """The dense columns a one-column product of the sliced layout counts as against the
    minimum work for threads (``kSlicedWorkColumns`` in product.hpp)."""
    return int(c_sliced_work_columns())


def validate_csr(const index_t[::1] indptr, const index_t[::1] indices, int64_t cols):
    """Raise ValueError unless (indptr, indices) is a valid CSR structure with ``cols`` columns.

    ``indptr`` must have at least one entry; its length minus one is the number of rows.
    """
    cdef int64_t rows = indptr.shape[0] - 1
    cdef int64_t nnz_stored = indices.shape[0]
    cdef const index_t* indices_ptr = &indices[0] if nnz_stored > 0 else NULL
    with nogil:
        c_validate_csr(&indptr[0], indices_ptr, rows, cols, nnz_stored)


def partition_bounds(const index_t[::1] indptr, int nthreads, int partition):
    """The row boundaries of the slices a partition strategy produces, as a list."""
    cdef vector[int64_t] bounds
    with nogil:
        bounds = c_partition_bounds(&indptr[0], indptr.shape[0] - 1, nthreads, partition)
    return list(bounds)


def vocabulary():
    """The names of spmm's kernels, backends, partitions, SIMD levels, kernel families and
    stored value formats, each list in the order of its C++ enum codes
    (``include/spmm/names.hpp``), keyed ``"kernel"``, ``"backend"``, ``"partition"``,
    ``"simd"``, ``"family"`` and ``"values"``."""
    lists = [tuple(name.decode() for name in names) for names in c_vocabulary()]
    return dict(zip(("kernel", "backend", "partition", "simd", "family", "values"), lists,
                    strict=True))


def simd_levels():
    """The instruction-set levels this build and CPU support, lowest first."""
    return [level.decode() for level in c_simd_levels()]


def slow_gathers():
    """Whether this CPU's vector gathers are slower than as many scalar loads (AMD family 19h:
    Zen 3 and Zen 4), so that ``auto`` reads the one-column layout with scalar loads."""
    return bool(c_slow_gathers())


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
    """Worker threads of the ``threads`` backend's persistent pool running now."""
    cdef size_t n
    with nogil:
        n = c_pool_workers()
    return int(n)


def pool_calls_taken():
    """A testing aid: for each worker of the ``threads`` backend's pool, in order, how many
    calls it has taken up (worker ``i`` serves calls of more than ``i + 1`` threads)."""
    cdef vector[uint64_t] counts
    with nogil:
        counts = c_pool_calls_taken()
    return [int(c) for c in counts]
