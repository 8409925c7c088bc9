// The one HTTP request the metrics endpoint understands, parsed without I/O: a request line and
// headers (RFC 9112), no body. Everything else is a bad request, answered with 400 and a close.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace rb::engine {

enum class HttpParseStatus {
  kNeedMore,  // no blank line yet, and still under the size limit
  kOk,
  kBad,       // malformed: 400 and close
  kTooLarge,  // the head passed the size limit without ending: 400 and close
};

struct HttpRequest {
  std::string method;
  std::string path;  // the target without its query string
  int minor_version = 1;  // HTTP/1.<minor>
  bool keep_alive = true;  // HTTP/1.1 unless "Connection: close"; HTTP/1.0 only with keep-alive
  size_t head_bytes = 0;   // bytes of the request line and headers, blank line included
};

// Parses the request at the start of `data`. Only GET-style requests are accepted: a body
// (Content-Length above 0, or any Transfer-Encoding) is kBad, and so is an HTTP/1.1 request
// without exactly one Host header. Lines may end in CRLF or a bare LF.
HttpParseStatus ParseHttpRequest(std::string_view data, size_t max_head_bytes, HttpRequest* out);

}  // namespace rb::engine
