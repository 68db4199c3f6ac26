# cython: language_level=3, initializedcheck=False
# distutils: language = c++
# (boundscheck and wraparound are set by setup.py: off, or on with SPMM_CYTHON_DEBUG=1)
"""Typed entry points into spmm's C++ kernels.

This layer only converts: numpy arrays in, raw pointers and sizes out, the GIL released
around every C++ call, and C++ exceptions turned into Python ones (``std::invalid_argument``
becomes ``ValueError``). Every decision (which kernel, backend, thread count, layout) is made
by the Python layer before it calls here.

The product entry points read numpy's array structs directly rather than through typed
memoryviews: acquiring a memoryview and dispatching a fused ``def`` on its dtype cost several
microseconds per call, as much as a whole small product.
"""

cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t, intptr_t, uint8_t, uint16_t, uint64_t
from libc.stdlib cimport getenv
from libcpp cimport bool as cbool
from libcpp.string cimport string
from libcpp.vector cimport vector

cnp.import_array()

ctypedef fused index_t:
    int32_t
    int64_t

ctypedef fused value_t:
    float
    double

# A CSR's row pointers and column indices: int32/int32, int64/int64, or int64/uint16 (a
# prepared matrix with at most 65,536 columns). Other pairs never reach C++.
ctypedef fused offset_t:
    int32_t
    int64_t

ctypedef fused column_t:
    int32_t
    int64_t
    uint16_t


cdef extern from "spmm/spmm.hpp" namespace "spmm" nogil:
    void c_csr_times_strided_dense "spmm::csr_times_strided_dense"[O, I, T](
        const O* indptr, const I* indices, const T* data, int64_t rows, int64_t cols,
        const T* b, int64_t b_cols, int64_t b_row_stride, int64_t b_col_stride,
        T* c, int64_t c_row_stride, int64_t c_col_stride,
        int kernel, int backend, int nthreads, int partition, int simd,
        const int64_t* bounds, int64_t nbounds, int64_t parallel_min_work) except +
    void c_validate_csr "spmm::validate_csr"[I](
        const I* indptr, const I* indices, int64_t rows, int64_t cols,
        int64_t nnz_stored) except +
    void c_csr_transpose "spmm::csr_transpose"[I, T](
        const I* indptr, const I* indices, const T* data, int64_t rows, int64_t cols,
        I* out_indptr, I* out_indices, T* out_data)
    vector[int64_t] c_partition_bounds "spmm::partition_bounds"[I](
        const I* indptr, int64_t rows, int nthreads, int partition) except +
    void c_panels_times_dense "spmm::panels_times_dense"[T](
        int64_t rows, int64_t cols, int64_t width, int64_t ld, int64_t run,
        const int64_t* unit_ptr, const int32_t* unit_row, const T* values, const T* x,
        int64_t batch, int64_t x_row_stride, int64_t x_col_stride, T* y, int64_t ldy,
        int backend, int nthreads, int partition, int simd,
        int64_t parallel_min_work) except +
    void c_nm_times_dense "spmm::nm_times_dense"[T](
        int64_t rows, int64_t cols, int64_t n, int64_t m, int64_t chunk, const T* values,
        const uint8_t* offsets, const T* x, int64_t batch, int64_t x_row_stride,
        int64_t x_col_stride, T* y, int64_t ldy, int backend, int nthreads, int partition,
        int simd, int64_t parallel_min_work) except +
    int64_t c_parallel_min_work "spmm::parallel_min_work"()
    int c_affinity_cpus "spmm::affinity_cpus"()
    cbool c_has_openmp "spmm::has_openmp"()
    cbool c_openmp_usable "spmm::openmp_usable"()
    long c_openmp_version "spmm::openmp_version"()
    string c_compiler_version "spmm::compiler_version"()
    string c_compile_args "spmm::compile_args"()
    size_t c_pool_workers "spmm::pool_workers"() except +
    vector[uint64_t] c_pool_calls_taken "spmm::pool_calls_taken"() except +
    vector[string] c_simd_levels "spmm::simd_levels"() except +
    vector[vector[string]] c_vocabulary "spmm::vocabulary"() except +


# --------------------------------------------------------------------------------------------
# Reading operands from numpy's structs. Each check answers "can the kernels use this array as
# it is?"; a "no" is never an error here: the product entry points then return False and the
# Python layer converts the operands (or reports what is wrong with them) and calls again.

cdef struct Dense:
    char* data
    int64_t rows, cols            # a 1-D array is one column
    int64_t row_stride, col_stride  # in elements
    intptr_t lo, hi               # the bytes it spans, [lo, hi), for the overlap check


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


cdef inline bint is_float(cnp.ndarray arr):
    cdef int t = cnp.PyArray_TYPE(arr)
    return t == cnp.NPY_FLOAT or t == cnp.NPY_DOUBLE


cdef inline int vector_itemsize(object x, bint index):
    """The item size of ``x`` if it is a 1-D, contiguous, aligned, native-endian ndarray of
    a signed integer dtype or uint16 (``index``), or of float32/float64, else 0."""
    if not cnp.PyArray_Check(x):
        return 0
    cdef cnp.ndarray arr = <cnp.ndarray>x
    if cnp.PyArray_NDIM(arr) != 1:
        return 0
    if index:
        if not (cnp.PyArray_ISSIGNED(arr) or cnp.PyArray_TYPE(arr) == cnp.NPY_UINT16):
            return 0
    elif not is_float(arr):
        return 0
    if not cnp.PyArray_CHKFLAGS(arr, cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_ALIGNED):
        return 0
    if not cnp.PyArray_ISNOTSWAPPED(arr):
        return 0
    return <int>cnp.PyArray_ITEMSIZE(arr)


cdef inline bint read_dense(object x, int64_t itemsize, bint writable, Dense* d):
    """Describe ``x`` in ``d`` if it is a 1-D or 2-D aligned, native-endian float ndarray of
    ``itemsize`` whose strides are whole elements (and writable when asked)."""
    if not cnp.PyArray_Check(x):
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>x
    cdef int ndim = cnp.PyArray_NDIM(arr)
    if ndim != 1 and ndim != 2:
        return False
    if not is_float(arr) or cnp.PyArray_ITEMSIZE(arr) != itemsize:
        return False
    if not cnp.PyArray_ISALIGNED(arr) or not cnp.PyArray_ISNOTSWAPPED(arr):
        return False
    if writable and not cnp.PyArray_ISWRITEABLE(arr):
        return False
    cdef int64_t row_bytes = cnp.PyArray_STRIDE(arr, 0)
    cdef int64_t col_bytes = cnp.PyArray_STRIDE(arr, 1) if ndim == 2 else itemsize
    if row_bytes % itemsize != 0 or col_bytes % itemsize != 0:
        return False
    d.data = <char*>cnp.PyArray_DATA(arr)
    d.rows = cnp.PyArray_DIM(arr, 0)
    d.cols = cnp.PyArray_DIM(arr, 1) if ndim == 2 else 1
    d.row_stride = row_bytes // itemsize
    d.col_stride = col_bytes // itemsize
    array_bounds(arr, &d.lo, &d.hi)
    return True


cdef inline bint meet(intptr_t lo, intptr_t hi, intptr_t x_lo, intptr_t x_hi):
    """Whether the byte ranges [lo, hi) and [x_lo, x_hi) meet (an empty one meets none)."""
    return lo < hi and x_lo < x_hi and lo < x_hi and x_lo < hi


cdef inline bint overlaps(intptr_t lo, intptr_t hi, object x):
    """Whether the bytes [lo, hi) meet those of the array ``x``."""
    cdef intptr_t x_lo, x_hi
    array_bounds(<cnp.ndarray>x, &x_lo, &x_hi)
    return meet(lo, hi, x_lo, x_hi)


def shares_memory(object x, tuple arrays):
    """Whether the ndarray ``x`` may share memory with one of ``arrays`` (ndarrays): the
    bounds check of ``numpy.may_share_memory``, without its per-call cost."""
    cdef intptr_t lo, hi
    array_bounds(<cnp.ndarray?>x, &lo, &hi)
    for y in arrays:
        if overlaps(lo, hi, <cnp.ndarray?>y):
            return True
    return False


cdef struct Call:
    # What a product needs besides A's three arrays, whose element types vary.
    int64_t nnz_stored, data_len  # the lengths of indices and data
    int64_t rows, cols            # A's shape
    Dense b, c
    bint check
    const int64_t* bounds
    int64_t nbounds, parallel_min_work
    int kernel, backend, nthreads, partition, simd


cdef int product(const offset_t* indptr, const column_t* indices, const value_t* data,
                 const Call* k) except -1 nogil:
    """Check A's structure if asked, then write A @ B into C. Returns 1 when done, 0 when data
    is shorter than indptr[rows] (the Python layer reports it)."""
    cdef int64_t i, j
    cdef value_t* out = <value_t*>k.c.data
    cdef const value_t* b = <const value_t*>k.b.data
    if k.check:
        if (offset_t is int32_t and column_t is int32_t) or (
                offset_t is int64_t and column_t is int64_t):
            c_validate_csr(indptr, indices, k.rows, k.cols, k.nnz_stored)
        else:
            return 0  # 16-bit indices are a prepared matrix's, checked when it was made
    if k.rows > 0 and <int64_t>indptr[k.rows] > k.data_len:
        return 0
    if k.rows == 0 or k.c.cols == 0:
        return 1
    if k.cols == 0:  # inner dimension 0 (so no stored entries): the product is all zeros
        for i in range(k.rows):
            for j in range(k.c.cols):
                out[i * k.c.row_stride + j * k.c.col_stride] = 0
        return 1
    if (offset_t is int32_t and column_t is int32_t) or (
            offset_t is int64_t and (column_t is int64_t or column_t is uint16_t)):
        c_csr_times_strided_dense(
            indptr, indices, data, k.rows, k.cols,
            b, k.b.cols, k.b.row_stride, k.b.col_stride,
            out, k.c.row_stride, k.c.col_stride, k.kernel, k.backend, k.nthreads,
            k.partition, k.simd, k.bounds, k.nbounds, k.parallel_min_work)
        return 1
    return 0  # not a pair of index types a CSR has here: never called so


def csr_times_dense(object indptr, object indices, object data, int64_t cols, object b,
                    object c, int kernel, int backend, int nthreads, int partition, int simd,
                    object bounds=None, bint check=False, int64_t parallel_min_work=-1):
    """Write ``A @ b`` into ``c``, A being the CSR matrix (indptr, indices, data) of ``cols``
    columns and ``len(indptr) - 1`` rows.

    Parameters
    ----------
    indptr, indices, data : numpy.ndarray
        A's arrays, each 1-D, contiguous, aligned and native-endian: indptr and indices both
        int32 or both int64, or (a prepared matrix's) int64 and uint16; data float32 or
        float64.
    cols : int
        A's column count.
    b : numpy.ndarray
        cols x n (or 1-D, one column), of data's dtype, any strides (whole elements). When
        its rows are not contiguous, or when an aligned copy pays (``worth_packing`` in
        ``include/spmm/formats/pack.hpp``), a packed copy is made outside the GIL.
    c : numpy.ndarray
        rows x n (or 1-D), writable, any strides, sharing no memory with the other operands.
    kernel, backend, nthreads, partition, simd : int
        The C++ enum codes of the configuration (the Python layer maps names to them).
    bounds : numpy.ndarray, optional
        int64 slice boundaries from :func:`partition_bounds` for this matrix, ``nthreads``
        and ``partition`` (a prepared matrix keeps them), or None to compute them.
    check : bool
        Check A's structure first (a ValueError if it is corrupt): for a matrix the user
        holds; a PreparedMatrix's was checked once.
    parallel_min_work : int
        Products doing less work run on the calling thread; negative means the built-in
        threshold (:func:`parallel_min_work`), 0 lets every product use the backend.

    Returns
    -------
    bool
        True when ``c`` holds the product. False, with nothing written, when an operand does
        not meet the conditions above: the caller converts it, or reports what is wrong.
    """
    cdef int offset_size = vector_itemsize(indptr, True)
    cdef int column_size = vector_itemsize(indices, True)
    cdef int value_size = vector_itemsize(data, False)
    cdef Call k
    cdef bint narrow = column_size == 2  # a prepared matrix's uint16 indices
    if narrow and cnp.PyArray_TYPE(<cnp.ndarray>indices) != cnp.NPY_UINT16:
        return False
    if not ((offset_size == column_size and (offset_size == 4 or offset_size == 8))
            or (offset_size == 8 and narrow)):
        return False
    if value_size != 4 and value_size != 8:
        return False
    if not read_dense(b, value_size, False, &k.b) or not read_dense(c, value_size, True, &k.c):
        return False
    k.rows = cnp.PyArray_DIM(<cnp.ndarray>indptr, 0) - 1
    k.cols = cols
    if k.rows < 0 or k.b.rows != cols or k.c.rows != k.rows or k.c.cols != k.b.cols:
        return False
    if (overlaps(k.c.lo, k.c.hi, indptr) or overlaps(k.c.lo, k.c.hi, indices)
            or overlaps(k.c.lo, k.c.hi, data) or meet(k.c.lo, k.c.hi, k.b.lo, k.b.hi)):
        return False
    k.bounds = NULL
    k.nbounds = 0
    if bounds is not None:
        if vector_itemsize(bounds, True) != 8:
            return False
        k.nbounds = cnp.PyArray_DIM(<cnp.ndarray>bounds, 0)
        k.bounds = <const int64_t*>cnp.PyArray_DATA(<cnp.ndarray>bounds)
    k.nnz_stored = cnp.PyArray_DIM(<cnp.ndarray>indices, 0)
    k.data_len = cnp.PyArray_DIM(<cnp.ndarray>data, 0)
    k.check, k.parallel_min_work = check, parallel_min_work
    k.kernel, k.backend, k.nthreads, k.partition, k.simd = (kernel, backend, nthreads,
                                                            partition, simd)
    cdef void* p = cnp.PyArray_DATA(<cnp.ndarray>indptr)
    cdef void* q = cnp.PyArray_DATA(<cnp.ndarray>indices)
    cdef void* v = cnp.PyArray_DATA(<cnp.ndarray>data)
    cdef int done
    with nogil:
        if column_size == 4 and value_size == 4:
            done = product(<const int32_t*>p, <const int32_t*>q, <const float*>v, &k)
        elif column_size == 4:
            done = product(<const int32_t*>p, <const int32_t*>q, <const double*>v, &k)
        elif column_size == 8 and value_size == 4:
            done = product(<const int64_t*>p, <const int64_t*>q, <const float*>v, &k)
        elif column_size == 8:
            done = product(<const int64_t*>p, <const int64_t*>q, <const double*>v, &k)
        elif value_size == 4:
            done = product(<const int64_t*>p, <const uint16_t*>q, <const float*>v, &k)
        else:
            done = product(<const int64_t*>p, <const uint16_t*>q, <const double*>v, &k)
    return done == 1


cdef int transpose(const index_t* indptr, const index_t* indices, int64_t nnz_stored,
                   const value_t* data, int64_t data_len, int64_t rows, int64_t cols,
                   bint check, index_t* out_indptr, index_t* out_indices,
                   value_t* out_data) except -1 nogil:
    if check:
        c_validate_csr(indptr, indices, rows, cols, nnz_stored)
    if <int64_t>indptr[rows] > data_len:
        return 0
    c_csr_transpose(indptr, indices, data, rows, cols, out_indptr, out_indices, out_data)
    return 1


def csr_transpose(object indptr, object indices, object data, int64_t rows, int64_t cols,
                  bint check):
    """The CSR arrays ``(indptr, indices, data)`` of A^T, A being rows x cols in CSR.

    The operands are as for :func:`csr_times_dense`; with ``check``, A's structure is checked
    first (a ValueError if it is corrupt). The arrays returned are new, of A's dtypes, and
    hold A^T's stored entries in row order within each column, as scipy's ``tocsc`` does.
    None, with nothing done, when an operand does not meet those conditions or when A's row
    numbers would not fit in its index dtype.
    """
    cdef int index_size = vector_itemsize(indptr, True)
    if (index_size != 4 and index_size != 8) or vector_itemsize(indices, True) != index_size:
        return None
    cdef int value_size = vector_itemsize(data, False)
    if value_size != 4 and value_size != 8:
        return None
    if cnp.PyArray_DIM(<cnp.ndarray>indptr, 0) != rows + 1 or rows < 0 or cols < 0:
        return None
    if index_size == 4 and rows > 2**31 - 1:
        return None
    cdef int64_t nnz_stored = cnp.PyArray_DIM(<cnp.ndarray>indices, 0)
    cdef int64_t data_len = cnp.PyArray_DIM(<cnp.ndarray>data, 0)
    # Sized by indptr[-1] (at most the stored length), so read it only once validated.
    cdef cnp.npy_intp n_indptr = cols + 1
    cdef cnp.npy_intp n_stored = min(nnz_stored, data_len)
    cdef cnp.ndarray t_indptr = cnp.PyArray_EMPTY(1, &n_indptr,
                                                  cnp.PyArray_TYPE(<cnp.ndarray>indptr), 0)
    cdef cnp.ndarray t_indices = cnp.PyArray_EMPTY(1, &n_stored,
                                                   cnp.PyArray_TYPE(<cnp.ndarray>indices), 0)
    cdef cnp.ndarray t_data = cnp.PyArray_EMPTY(1, &n_stored,
                                                cnp.PyArray_TYPE(<cnp.ndarray>data), 0)
    cdef void* p = cnp.PyArray_DATA(<cnp.ndarray>indptr)
    cdef void* q = cnp.PyArray_DATA(<cnp.ndarray>indices)
    cdef void* v = cnp.PyArray_DATA(<cnp.ndarray>data)
    cdef void* tp = cnp.PyArray_DATA(t_indptr)
    cdef void* tq = cnp.PyArray_DATA(t_indices)
    cdef void* tv = cnp.PyArray_DATA(t_data)
    cdef int done
    with nogil:
        if index_size == 4 and value_size == 4:
            done = transpose(<const int32_t*>p, <const int32_t*>q, nnz_stored, <const float*>v,
                             data_len, rows, cols, check, <int32_t*>tp, <int32_t*>tq,
                             <float*>tv)
        elif index_size == 4:
            done = transpose(<const int32_t*>p, <const int32_t*>q, nnz_stored, <const double*>v,
                             data_len, rows, cols, check, <int32_t*>tp, <int32_t*>tq,
                             <double*>tv)
        elif value_size == 4:
            done = transpose(<const int64_t*>p, <const int64_t*>q, nnz_stored, <const float*>v,
                             data_len, rows, cols, check, <int64_t*>tp, <int64_t*>tq,
                             <float*>tv)
        else:
            done = transpose(<const int64_t*>p, <const int64_t*>q, nnz_stored, <const double*>v,
                             data_len, rows, cols, check, <int64_t*>tp, <int64_t*>tq,
                             <double*>tv)
    if not done:
        return None
    nnz = int(t_indptr[cols])
    return t_indptr, t_indices[:nnz], t_data[:nnz]


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
                       int backend, int nthreads, int partition, int simd,
                       int64_t parallel_min_work):
    """Y = X W for W in the column-tile layout (``spmm/_layouts.py``; panels.hpp).

    ``values`` holds the panel rows (``ld`` = its number of columns); ``x`` is batch x rows
    with any strides (multiples of its item size), ``y`` batch x cols with unit column stride.
    The sizes that bound every access are checked here; the contents of ``unit_ptr`` and
    ``unit_row`` (non-decreasing, in range) when the layout was built or unpickled
    (``spmm._layouts.check``).
    """
    strided_operands(y, x, rows, cols)
    cdef Py_ssize_t size = sizeof(value_t)
    cdef int64_t tiles = (cols + width - 1) // width if width > 0 else -1
    cdef int64_t vector = 64 // size  # the widest vector: panel rows are padded to it
    if (width < 1 or run < 1 or unit_ptr.shape[0] != tiles + 1
            or values.shape[1] < (width + vector - 1) // vector * vector
            or values.shape[0] != unit_row.shape[0] * run):
        raise ValueError("panels_times_dense: the layout's arrays do not fit its shape")
    cdef const int32_t* rows_ptr = &unit_row[0] if unit_row.shape[0] > 0 else NULL
    cdef const value_t* values_ptr = &values[0, 0] if values.shape[0] > 0 else NULL
    cdef const value_t* x_ptr = &x[0, 0] if x.shape[0] > 0 and x.shape[1] > 0 else NULL
    cdef value_t* y_ptr = &y[0, 0] if y.shape[0] > 0 and y.shape[1] > 0 else NULL
    with nogil:
        c_panels_times_dense(rows, cols, width, values.shape[1], run, &unit_ptr[0], rows_ptr,
                             values_ptr, x_ptr, x.shape[0], x.strides[0] // size,
                             x.strides[1] // size, y_ptr, y.strides[0] // size, backend,
                             nthreads, partition, simd, parallel_min_work)


def nm_times_dense(int64_t rows, int64_t cols, int64_t n, int64_t m,
                   const value_t[:, :, ::1] values, const uint8_t[:, :, ::1] offsets,
                   const value_t[:, :] x, value_t[:, :] y, int backend, int nthreads,
                   int partition, int simd, int64_t parallel_min_work):
    """Y = X W for W with N:M sparsity (``spmm/_layouts.py``; panels.hpp's NmView).

    ``values`` and ``offsets`` are chunks x (groups * n) x chunk; ``x`` and ``y`` as for
    :func:`panels_times_dense`.
    """
    strided_operands(y, x, rows, cols)
    cdef int64_t chunk = values.shape[2]
    cdef int64_t groups = (rows + m - 1) // m if m > 0 else -1
    if (values.shape[0] != offsets.shape[0] or values.shape[1] != offsets.shape[1]
            or values.shape[2] != offsets.shape[2] or chunk < 64 or chunk % 64
            or values.shape[0] != (cols + chunk - 1) // chunk or m < 1 or m > 255
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
    with nogil:
        c_nm_times_dense(rows, cols, n, m, values.shape[2], values_ptr, offsets_ptr, x_ptr,
                         x.shape[0], x.strides[0] // size, x.strides[1] // size, y_ptr,
                         y.strides[0] // size, backend, nthreads, partition, simd,
                         parallel_min_work)


def affinity_cpus():
    """The number of CPUs in this process's affinity mask, or 0 where it cannot be read
    cheaply (not Linux, or more CPUs than a ``cpu_set_t`` holds)."""
    return c_affinity_cpus()


def parallel_min_work():
    """The work, (stored entries + rows) x dense columns, below which a product runs on the
    calling thread whatever the backend (``kParallelMinWork`` in product.hpp)."""
    return int(c_parallel_min_work())


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
    """The names of spmm's kernels, backends, partitions and SIMD levels, each list in the
    order of its C++ enum codes (``include/spmm/names.hpp``), keyed ``"kernel"``,
    ``"backend"``, ``"partition"`` and ``"simd"``."""
    lists = [tuple(name.decode() for name in names) for names in c_vocabulary()]
    return dict(zip(("kernel", "backend", "partition", "simd"), lists))


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
