#include "proto/auth_util.h"

// clang-format off
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/coding.h>
// clang-format on

namespace rb::proto {

bool ConstantTimeEquals(absl::Span<const uint8_t> a, absl::Span<const uint8_t> b) {
  if (a.size() != b.size()) return false;
  // volatile keeps the compiler from turning the loop into an early-exit memcmp.
  volatile uint8_t diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff = diff | static_cast<uint8_t>(a[i] ^ b[i]);
  return diff == 0;
}

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  return ConstantTimeEquals(
      absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(a.data()), a.size()),
      absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(b.data()), b.size()));
}

std::string Base64Encode(absl::Span<const uint8_t> data) {
  if (data.empty()) return std::string();
  std::string out(4 * ((data.size() + 2) / 3), '\0');
  word32 out_len = static_cast<word32>(out.size());
  // Base64_Encode_NoNl writes exactly the padded length and never a terminator when the
  // buffer is sized exactly (checked on wolfSSL 5.5.4).
  if (Base64_Encode_NoNl(data.data(), static_cast<word32>(data.size()),
                         reinterpret_cast<byte*>(out.data()), &out_len) != 0) {
    return std::string();
  }
  out.resize(out_len);
  return out;
}

std::string Base64Encode(absl::string_view data) {
  return Base64Encode(
      absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()), data.size()));
}

namespace {

bool IsBase64AlphabetChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '+' || c == '/';
}

}  // namespace

bool Base64Decode(absl::string_view text, std::string* out) {
  out->clear();
  if (text.empty()) return true;
  if (text.size() % 4 != 0) return false;
  // Padding: at most two '=' and only at the end.
  size_t pad = 0;
  if (text[text.size() - 1] == '=') ++pad;
  if (pad == 1 && text[text.size() - 2] == '=') ++pad;
  for (size_t i = 0; i < text.size() - pad; ++i) {
    if (!IsBase64AlphabetChar(text[i])) return false;
  }
  const size_t decoded_len = text.size() / 4 * 3 - pad;
  // wolfCrypt wants room for whole 3-byte groups, padding included, before it starts.
  out->resize(text.size() / 4 * 3);
  word32 out_len = static_cast<word32>(out->size());
  if (Base64_Decode(reinterpret_cast<const byte*>(text.data()), static_cast<word32>(text.size()),
                    reinterpret_cast<byte*>(out->data()), &out_len) != 0 ||
      out_len != decoded_len) {
    out->clear();
    return false;
  }
  out->resize(decoded_len);
  return true;
}

std::string HexLower(absl::Span<const uint8_t> data) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(2 * data.size(), '\0');
  for (size_t i = 0; i < data.size(); ++i) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 0xf];
  }
  return out;
}

}  // namespace rb::proto
