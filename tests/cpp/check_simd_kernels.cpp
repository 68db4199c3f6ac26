// Every SIMD level this build and CPU support, checked against a double-precision reference.
// Run by .ci/run natively (scalar, avx2, avx512 as the CPU has them) and, cross-compiled for
// aarch64, under qemu-aarch64 (scalar, neon):
//   g++ -std=c++17 -O2 -Iinclude tests/cpp/check_simd_kernels.cpp -o check && ./check
//   aarch64-linux-gnu-g++ -std=c++17 -O2 -Iinclude tests/cpp/check_simd_kernels.cpp -o check
//   qemu-aarch64 -L /usr/aarch64-linux-gnu ./check
// Level x kernel x value type x index type (int32, int64, uint16), over dense widths below, at
// and above every vector length (2 to 16 lanes) and block (up to 8 vectors); row strides
// unpadded, padded to a multiple of every vector, and padded by an odd amount; operands
// starting 0 to 3 elements past a 64-byte boundary (the aligned-shift path) or ending flush
// against an unreadable page (a load of an inactive lane past the end faults; A's indices and
// values always end there); output rows contiguous (A @ B) or strided (X @ W).
// Every element must match, and nothing around the output's elements may be written. The
// same cases run again on an L2 of 256 bytes (spmm::set_l2_cache_bytes), rows sorted: the
// tiled kernel's narrow passes and its blocks of the inner dimension on small matrices.
// The reduced stored values of a prepared matrix (bfloat16, float16, int8 with a scale per row;
// formats/values.hpp) run the same cases, their reference computed from the widened values: the
// kernels' own error, against the float32 product of the rounded weights. Every float16 bit
// pattern is also widened by each level's conversion and compared with the portable one.
// Prints "N passed, N failed"; exit code 0 on success.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "spmm/spmm.hpp"

namespace {

const std::int64_t kWidths[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 65, 129};
constexpr std::int64_t kRows = 23, kInner = 19;
// Row lengths, cycled over the rows: empty rows, fewer and more entries than the kernel's
// independent accumulator chains (up to 4), and a long row.
const int kRowLengths[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 17, 0, 0, 6};
constexpr int kPlacements = 5;  // 0-3: that many elements past 64 bytes; 4: flush at the end

// What is being run, for the fault handler: a kernel touching memory it must not is a
// SIGSEGV, which should still say which case did it.
char g_case[256] = "setup";

extern "C" void on_fault(int) {
    const char head[] = "FAIL: memory fault (a kernel touched memory outside its operands) in ";
    ssize_t ignored = write(2, head, sizeof head - 1);
    ignored = write(2, g_case, std::strlen(g_case));
    ignored = write(2, "\n", 1);
    (void)ignored;
    _exit(2);
}

// Readable pages followed by an unreadable one, so an operand can end right before memory
// that faults when touched.
class GuardedArena {
  public:
    explicit GuardedArena(std::size_t bytes) {
        const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
        size_ = (bytes + page - 1) / page * page;
        void* p = mmap(nullptr, size_ + page, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED || mprotect(static_cast<char*>(p) + size_, page, PROT_NONE) != 0) {
            std::perror("mmap/mprotect");
            std::exit(2);
        }
        base_ = static_cast<char*>(p);
    }
    ~GuardedArena() { munmap(base_, size_ + static_cast<std::size_t>(sysconf(_SC_PAGESIZE))); }
    GuardedArena(const GuardedArena&) = delete;
    GuardedArena& operator=(const GuardedArena&) = delete;

    // Where an operand of `count` elements starts for a placement (see kPlacements).
    template <class T>
    T* place(int placement, std::int64_t count) const {
        T* const begin = reinterpret_cast<T*>(base_);
        T* const end = reinterpret_cast<T*>(base_ + size_);
        return placement < 4 ? begin + placement : end - count;
    }
    template <class T>
    T* begin() const { return reinterpret_cast<T*>(base_); }
    template <class T>
    std::int64_t capacity() const { return static_cast<std::int64_t>(size_ / sizeof(T)); }

  private:
    char* base_ = nullptr;
    std::size_t size_ = 0;
};

template <class I>
struct Pattern {
    std::vector<spmm::offset_t<I>> indptr{0};
    std::vector<I> indices;
    std::vector<double> values;
};

// One sparsity pattern for every case; indices are random, so some repeat within a row.
// Rows in random column order (a user's matrix may have them), or sorted (`sorted`: a prepared
// matrix's canonical rows, which the kernels may cut by column).
template <class I>
Pattern<I> make_pattern(std::mt19937& gen, bool sorted) {
    Pattern<I> a;
    std::uniform_real_distribution<double> value(-1.0, 1.0);
    const std::size_t cycle = sizeof kRowLengths / sizeof kRowLengths[0];
    for (std::int64_t i = 0; i < kRows; ++i) {
        for (int l = 0; l < kRowLengths[static_cast<std::size_t>(i) % cycle]; ++l) {
            a.indices.push_back(static_cast<I>(gen() % kInner));
            a.values.push_back(value(gen));
        }
        if (sorted) std::sort(a.indices.begin() + static_cast<std::ptrdiff_t>(a.indptr.back()), a.indices.end());
        a.indptr.push_back(static_cast<spmm::offset_t<I>>(a.indices.size()));
    }
    return a;
}

const char* kernel_name(spmm::Kernel k) {
    if (k == spmm::Kernel::naive) return "naive";
    return k == spmm::Kernel::reordered ? "reordered" : "tiled";
}
const char* index_name(std::uint16_t) { return "uint16"; }
const char* index_name(std::int32_t) { return "int32"; }
const char* index_name(std::int64_t) { return "int64"; }
const char* type_name(float) { return "float"; }
const char* type_name(double) { return "double"; }
const char* type_name(spmm::bfloat16) { return "bfloat16"; }
const char* type_name(spmm::float16) { return "float16"; }
const char* type_name(std::int8_t) { return "int8"; }

// A stored value of type S near v in [-1, 1] (float and double: v itself), and its exact value.
template <class S>
S stored_near(double v) {
    if constexpr (std::is_same_v<S, spmm::bfloat16>) {
        const float f = static_cast<float>(v);
        std::uint32_t bits;
        std::memcpy(&bits, &f, sizeof bits);
        return spmm::bfloat16{static_cast<std::uint16_t>(bits >> 16)};
    } else if constexpr (std::is_same_v<S, spmm::float16>) {
        // sign, a normal exponent for [2^-9, 1], a random-looking mantissa from v's digits
        const double m = std::fabs(v);
        const auto exponent = static_cast<std::uint16_t>(6 + static_cast<int>(m * 9));
        const auto mantissa = static_cast<std::uint16_t>(static_cast<int>(m * 1e6) & 0x3FF);
        return spmm::float16{static_cast<std::uint16_t>((v < 0 ? 0x8000 : 0) | exponent << 10 | mantissa)};
    } else if constexpr (std::is_same_v<S, std::int8_t>) {
        return static_cast<std::int8_t>(std::lround(v * 127));
    } else {
        return static_cast<S>(v);
    }
}

template <class S>
double exact(S s) { return static_cast<double>(spmm::Stored<S>::one(s)); }

struct Tally {
    long passed = 0, failed = 0;
};

template <class T>
T sentinel() { return T(-12345.5); }

// One (I, T, S, width, row stride, placement) case: B is written into its arena, then every
// level x kernel x output layout is run and checked.
template <class I, class T, class S>
void check_case(const spmm::CsrView<I, S>& a, std::int64_t n, std::int64_t ld, int placement,
                GuardedArena& b_arena, GuardedArena& c_arena, std::mt19937& gen, Tally& tally) {
    // B: the last row has no padding, so with the flush placement its last element is the last
    // readable one. Padding holds NaN: a padded lane used as active poisons the result.
    const std::int64_t b_extent = (kInner - 1) * ld + n;
    T* const b = b_arena.place<T>(placement, b_extent);
    std::fill(b_arena.begin<T>(), b_arena.begin<T>() + b_arena.capacity<T>(),
              std::numeric_limits<T>::quiet_NaN());
    std::uniform_real_distribution<double> value(-1.0, 1.0);
    for (std::int64_t r = 0; r < kInner; ++r)
        for (std::int64_t j = 0; j < n; ++j) b[r * ld + j] = static_cast<T>(value(gen));
    const spmm::DenseView<T> bv{b, kInner, n, ld};

    // The reference, and the sum of |terms| that bounds the rounding error of any order.
    std::vector<double> want(static_cast<std::size_t>(kRows * n)), mag(want.size());
    for (std::int64_t i = 0; i < kRows; ++i) {
        for (std::int64_t p = a.row_begin(i); p < a.row_end(i); ++p) {
            const double av = exact(a.data[p]) * (a.scale != nullptr ? a.scale[i] : 1.0);
            const T* brow = bv.row(static_cast<std::int64_t>(a.indices[p]));
            for (std::int64_t j = 0; j < n; ++j) {
                const auto e = static_cast<std::size_t>(i * n + j);
                want[e] += av * static_cast<double>(brow[j]);
                mag[e] += std::fabs(av * static_cast<double>(brow[j]));
            }
        }
    }
    const double eps = std::numeric_limits<T>::epsilon();

    for (const bool strided : {false, true}) {
        // Rows contiguous (A @ B) with the same padding as B's rows; or C transposed (X @ W:
        // row stride 1) with the columns padded likewise.
        const std::int64_t pad = ld - n;
        const std::int64_t rs = strided ? 1 : n + pad, cs = strided ? kRows + pad : 1;
        const std::int64_t c_extent = strided ? (n - 1) * cs + kRows : (kRows - 1) * rs + n;
        T* const c = c_arena.place<T>(placement, c_extent);
        const spmm::OutView<T> cv{c, kRows, n, rs, cs};
        // The checked kernels (a user's matrix, checked where it is read) and the trusting
        // ones (a prepared matrix); 16-bit indices are only ever a prepared matrix's.
        for (const bool check : {false, true}) {
            if (check && (std::is_same_v<I, std::uint16_t> || !std::is_same_v<S, T>)) continue;
            for (const spmm::Simd level : spmm::supported_simd_levels()) {
                for (const spmm::Kernel kernel :
                     {spmm::Kernel::naive, spmm::Kernel::reordered, spmm::Kernel::tiled}) {
                    std::snprintf(g_case, sizeof g_case,
                                  "level=%s kernel=%s T=%s S=%s I=%s n=%lld ld=%lld placement=%d out=%s check=%d",
                                  spmm::simd_name(level).c_str(), kernel_name(kernel), type_name(T()),
                                  type_name(S()),
                                  index_name(I()), static_cast<long long>(n),
                                  static_cast<long long>(ld),
                                  placement, strided ? "strided" : "rows", int(check));
                    const T s = sentinel<T>();
                    std::fill(c_arena.begin<T>(), c_arena.begin<T>() + c_arena.capacity<T>(), s);
                    spmm::Call call;
                    call.kernel = kernel;
                    call.simd = level;
                    spmm::multiply_csr(a, bv, cv, call, check);
                    // Take each element out, leaving the sentinel: then the whole arena must be
                    // sentinel, or something outside the elements was written.
                    int bad = 0;
                    for (std::int64_t i = 0; i < kRows; ++i) {
                        for (std::int64_t j = 0; j < n; ++j) {
                            T& slot = cv.at(i, j);
                            const double got = static_cast<double>(slot);
                            slot = s;
                            const auto e = static_cast<std::size_t>(i * n + j);
                            const double tol = 4.0 * (kInner + 2) * eps * mag[e] + 1e-30;
                            if (!(std::fabs(got - want[e]) <= tol) && bad++ < 3) {
                                std::printf("FAIL: %s: C(%lld, %lld) = %.17g, want %.17g\n", g_case,
                                            static_cast<long long>(i), static_cast<long long>(j),
                                            got, want[e]);
                            }
                        }
                    }
                    const T* const arena = c_arena.begin<T>();
                    for (std::int64_t q = 0; q < c_arena.capacity<T>(); ++q) {
                        if (std::memcmp(&arena[q], &s, sizeof s) != 0) {
                            std::printf("FAIL: %s: wrote element %lld of the output buffer, outside C "
                                        "(which starts at %lld)\n",
                                        g_case, static_cast<long long>(q),
                                        static_cast<long long>(c - arena));
                            ++bad;
                            break;
                        }
                    }
                    ++(bad ? tally.failed : tally.passed);
                }
            }
        }
    }
}

// T: the type the product computes in; S: the stored values' (T, or a reduced format).
// With `small_l2`, the kernels plan for an L2 of a few hundred bytes (simd/cache.hpp): the
// tiled kernel's passes narrow to one vector (a user's matrix) or the inner dimension is cut
// into blocks of 8 rows of B and A's rows into groups (a prepared one, its rows sorted).
template <class I, class T, class S = T>
void check_all(GuardedArena& b_arena, GuardedArena& c_arena, Tally& tally, bool small_l2 = false) {
    std::mt19937 gen(12345);
    spmm::set_l2_cache_bytes(small_l2 ? 256 : 0);
    const Pattern<I> pat = make_pattern<I>(gen, small_l2);
    // A's indices and values end against an unreadable page too: a kernel reading past the
    // last row's entries (a gather or a load of values with too many lanes) faults.
    const auto nnz = static_cast<std::int64_t>(pat.indices.size());
    GuardedArena idx_arena(pat.indices.size() * sizeof(I));
    GuardedArena val_arena(pat.values.size() * sizeof(S));
    I* const indices = idx_arena.place<I>(kPlacements - 1, nnz);
    S* const values = val_arena.place<S>(kPlacements - 1, nnz);
    std::copy(pat.indices.begin(), pat.indices.end(), indices);
    std::transform(pat.values.begin(), pat.values.end(), values, stored_near<S>);
    spmm::CsrView<I, S> a{pat.indptr.data(), indices, values, kRows, kInner,
                          static_cast<std::int64_t>(pat.indptr.back())};
    // int8: a scale per row, spanning orders of magnitude (and one row of scale zero).
    std::vector<float> scale(kRows);
    for (std::int64_t i = 0; i < kRows; ++i) scale[static_cast<std::size_t>(i)] = i == 3 ? 0.0f : std::ldexp(0.75f, static_cast<int>(i % 9) - 6);
    if (spmm::is_scaled_v<S>) a.scale = scale.data();
    for (const std::int64_t n : kWidths) {
        // Unpadded; padded to a multiple of 16 elements (every vector length: B's rows then
        // share one alignment and the tiled kernel shifts its blocks); padded by 3.
        for (const std::int64_t ld : {n, (n + 16) / 16 * 16, n + 3}) {
            for (int placement = 0; placement < kPlacements; ++placement) {
                check_case<I, T, S>(a, n, ld, placement, b_arena, c_arena, gen, tally);
            }
        }
    }
}

// Every float16 bit pattern widened by each level's conversion (F16C, vcvtph2ps, NEON's
// fcvtl, through Stored<float16>::first and the row widening of the tiled body) equals the
// portable conversion, bit for bit; NaNs need only stay NaN (a conversion may quiet them).
void check_float16_widening(Tally& tally) {
    std::vector<spmm::float16> all(65536);
    for (std::size_t h = 0; h < all.size(); ++h) all[h] = spmm::float16{static_cast<std::uint16_t>(h)};
    for (const spmm::Simd level : spmm::supported_simd_levels()) {
        // A one-row matrix per 16 patterns, times B = 1: y = the widened values' sum would mix
        // them; instead a row of one entry each, so y[i] is pattern i widened.
        std::vector<std::int64_t> indptr(all.size() + 1);
        for (std::size_t i = 0; i <= all.size(); ++i) indptr[i] = static_cast<std::int64_t>(i);
        std::vector<std::uint16_t> indices(all.size(), 0);
        const spmm::CsrView<std::uint16_t, spmm::float16> a{indptr.data(), indices.data(), all.data(),
                                                            static_cast<std::int64_t>(all.size()), 1,
                                                            static_cast<std::int64_t>(all.size())};
        for (const std::int64_t n : {1, 2}) {
            std::vector<float> b(static_cast<std::size_t>(n), 1.0f), c(all.size() * static_cast<std::size_t>(n));
            spmm::Call call;
            call.simd = level;
            spmm::multiply_csr(a, spmm::DenseView<float>{b.data(), 1, n, n},
                               spmm::OutView<float>{c.data(), static_cast<std::int64_t>(all.size()), n, n, 1},
                               call, false);
            long bad = 0;
            for (std::size_t h = 0; h < all.size(); ++h) {
                const float want = spmm::widen_float16(static_cast<std::uint16_t>(h));
                const float got = c[h * static_cast<std::size_t>(n)];
                const bool same = std::isnan(want) ? std::isnan(got) : std::memcmp(&want, &got, sizeof got) == 0 || (want == 0 && got == 0);
                if (!same && bad++ < 3) {
                    std::printf("FAIL: level=%s n=%lld: float16 0x%04zx widened to %.9g, want %.9g\n",
                                spmm::simd_name(level).c_str(), static_cast<long long>(n), h, got, want);
                }
            }
            ++(bad ? tally.failed : tally.passed);
        }
    }
}

}  // namespace

int main() {
    std::signal(SIGSEGV, on_fault);
    std::signal(SIGBUS, on_fault);
    // Large enough for the widest case: 19 rows of B, or 129 x (23 + 16) of C, in doubles.
    GuardedArena b_arena(kInner * 160 * sizeof(double)), c_arena(129 * 48 * sizeof(double));
    Tally tally;
    // uint16: a prepared matrix's column indices (with 64-bit row pointers).
    check_all<std::int32_t, float>(b_arena, c_arena, tally);
    check_all<std::int64_t, float>(b_arena, c_arena, tally);
    check_all<std::uint16_t, float>(b_arena, c_arena, tally);
    check_all<std::int32_t, double>(b_arena, c_arena, tally);
    check_all<std::int64_t, double>(b_arena, c_arena, tally);
    check_all<std::uint16_t, double>(b_arena, c_arena, tally);
    // Reduced values, with a prepared matrix's index types.
    check_all<std::uint16_t, float, spmm::bfloat16>(b_arena, c_arena, tally);
    check_all<std::uint16_t, float, spmm::float16>(b_arena, c_arena, tally);
    check_all<std::uint16_t, float, std::int8_t>(b_arena, c_arena, tally);
    check_all<std::int32_t, float, spmm::bfloat16>(b_arena, c_arena, tally);
    check_all<std::int64_t, float, std::int8_t>(b_arena, c_arena, tally);
    // The L2-sized passes and blocks, at every value and index type.
    check_all<std::int32_t, float>(b_arena, c_arena, tally, true);
    check_all<std::uint16_t, float>(b_arena, c_arena, tally, true);
    check_all<std::int64_t, double>(b_arena, c_arena, tally, true);
    check_all<std::uint16_t, double>(b_arena, c_arena, tally, true);
    check_all<std::uint16_t, float, spmm::bfloat16>(b_arena, c_arena, tally, true);
    check_all<std::uint16_t, float, spmm::float16>(b_arena, c_arena, tally, true);
    check_all<std::uint16_t, float, std::int8_t>(b_arena, c_arena, tally, true);
    spmm::set_l2_cache_bytes(0);
    check_float16_widening(tally);
    std::printf("levels:");
    for (const auto& name : spmm::supported_simd()) std::printf(" %s", name.c_str());
    std::printf("\n%ld passed, %ld failed\n", tally.passed, tally.failed);
    return tally.failed != 0;
}
