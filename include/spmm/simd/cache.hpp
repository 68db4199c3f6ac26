// The size of this core's L2 cache, read at run time: what the kernels size their passes over
// the dense operand by (kernels/tiled.inc, kernels/panels.inc), so that the part of it a pass
// reads stays in L2 on any CPU rather than on the one the constants were measured on.
//
// Read once, in order: sysconf(_SC_LEVEL2_CACHE_SIZE) (glibc asks cpuid: leaf 4 on Intel,
// 0x8000001D on AMD), then sysfs (/sys/devices/system/cpu/cpu0/cache/index*/, the level-2
// unified or data cache; what Linux reports on aarch64, where glibc's sysconf has no answer),
// else kFallbackL2Bytes. Tests replace the value (set_l2_cache_bytes) to exercise on small
// matrices the paths large ones take.
#pragma once

#include <atomic>
#include <cstdint>
#include <fstream>
#include <string>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace spmm {

// The L2 size assumed when the system does not say: 1 MiB, the smaller side of current server
// cores (512 KiB to 2 MiB), so that an unknown CPU errs towards narrower passes (a few percent
// slower) rather than wider ones that miss L2 (several times slower).
constexpr std::int64_t kFallbackL2Bytes = std::int64_t{1} << 20;

// The smallest and largest sizes believed: anything else is a misreport (some hypervisors
// report 0 or the whole package's cache).
constexpr std::int64_t kMinL2Bytes = std::int64_t{64} << 10;
constexpr std::int64_t kMaxL2Bytes = std::int64_t{64} << 20;

// "2048K", "1M", "524288" (sysfs's size files) in bytes; 0 when unreadable.
inline std::int64_t parse_cache_size(const std::string& text) {
    std::int64_t value = 0;
    std::size_t i = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
        value = value * 10 + (text[i] - '0');
        if (value > kMaxL2Bytes) return 0;
        ++i;
    }
    if (i == 0) return 0;
    if (i < text.size() && (text[i] == 'K' || text[i] == 'k')) return value << 10;
    if (i < text.size() && text[i] == 'M') return value << 20;
    return value;
}

// The L2 size as the system reports it (0: it does not), and where it came from.
inline std::int64_t system_l2_cache_bytes(std::string* source = nullptr) {
    auto believed = [](std::int64_t bytes) { return bytes >= kMinL2Bytes && bytes <= kMaxL2Bytes; };
#if defined(_SC_LEVEL2_CACHE_SIZE)
    const long reported = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (believed(reported)) {
        if (source != nullptr) *source = "sysconf";
        return reported;
    }
#endif
    for (int index = 0; index < 8; ++index) {
        const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/";
        std::ifstream level_file(dir + "level"), type_file(dir + "type"), size_file(dir + "size");
        std::string level, type, size;
        if (!(level_file >> level) || !(type_file >> type) || !(size_file >> size)) continue;
        if (level != "2" || type == "Instruction") continue;
        const std::int64_t bytes = parse_cache_size(size);
        if (believed(bytes)) {
            if (source != nullptr) *source = "sysfs";
            return bytes;
        }
    }
    return 0;
}

namespace detail {
// A test's replacement for the system's L2 size (0: none).
inline std::atomic<std::int64_t>& l2_override() {
    static std::atomic<std::int64_t> value{0};
    return value;
}
}  // namespace detail

// Replace the L2 size the kernels plan with (for tests: small values make small matrices take
// the blocked paths); 0 restores the system's.
inline void set_l2_cache_bytes(std::int64_t bytes) { detail::l2_override().store(bytes < 0 ? 0 : bytes); }

// The L2 size the kernels plan with: a test's replacement, else the system's (read once), else
// kFallbackL2Bytes.
inline std::int64_t l2_cache_bytes() {
    const std::int64_t forced = detail::l2_override().load(std::memory_order_relaxed);
    if (forced > 0) return forced;
    static const std::int64_t detected = [] {
        const std::int64_t bytes = system_l2_cache_bytes();
        return bytes > 0 ? bytes : kFallbackL2Bytes;
    }();
    return detected;
}

// Where l2_cache_bytes comes from: "test", "sysconf", "sysfs" or "fallback".
inline std::string l2_cache_source() {
    if (detail::l2_override().load() > 0) return "test";
    std::string source = "fallback";
    system_l2_cache_bytes(&source);
    return source;
}

}  // namespace spmm
