// Small helpers shared by the md5 and SCRAM exchanges: constant-time comparison, strict
// base64 (on top of wolfCrypt's coder) and lowercase hex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace rb::proto {

// Compares two byte strings without an early exit, so the time taken does not tell an
// attacker how many leading bytes of a secret they guessed. The lengths are not secret
// (they are fixed by the protocol) and are compared first.
[[nodiscard]] bool ConstantTimeEquals(absl::Span<const uint8_t> a, absl::Span<const uint8_t> b);
[[nodiscard]] bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

// Standard base64 (RFC 4648 section 4, with padding, no line breaks), as SCRAM and the
// pg_authid secret format use it.
[[nodiscard]] std::string Base64Encode(absl::Span<const uint8_t> data);
[[nodiscard]] std::string Base64Encode(absl::string_view data);

// Strict decoding: only the base64 alphabet, a length that is a multiple of 4 and at most two
// '=' at the very end. wolfCrypt's Base64_Decode is lenient (it skips whitespace, drops a
// trailing partial quantum and ignores bytes after the padding), so the input is checked here
// first. Like PostgreSQL's decoder, unused low bits in the last quantum are tolerated.
// Returns false on malformed input; `out` is then unspecified.
[[nodiscard]] bool Base64Decode(absl::string_view text, std::string* out);

// Lowercase hex, as md5 secrets use it.
[[nodiscard]] std::string HexLower(absl::Span<const uint8_t> data);

}  // namespace rb::proto
