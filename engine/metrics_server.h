// The metrics endpoint: Prometheus text format (0.0.4) over HTTP/1.1 at GET /metrics, on the
// address `metrics_listen` names. Off unless that setting is set.
//
// The supervisor binds the socket and gives it to worker 0 as one more listener. The worker
// accepts on it with io_uring like any other, and its MetricsServer speaks HTTP on the
// connections: a plain recv into a small per-connection buffer (never the worker's buffer
// ring, which belongs to the pooled traffic), a bounded request head, and a send of the whole
// answer. A scrape gathers every worker's part through the admin console's mailbox requests
// (AdminConsole::Gather with reply_to kMetrics), so the numbers are the process's and the
// worker never waits: the answer goes out when the last part comes back.
//
// Bad requests get 400 and a close, other paths 404, other methods 405; keep-alive is kept
// for well-formed requests. A connection that has not finished a request (or gone quiet
// between two) within kRequestTimeout is closed, and at most kMaxConnections are served at
// once, so a slow or hostile scraper costs a bounded amount of memory.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <liburing.h>

namespace rb::engine {

class Worker;
struct AdminRequest;
struct Config;
class SharedState;

// The Prometheus text for a gathered kMetrics request (metrics_text.cc).
std::string RenderPrometheusMetrics(const AdminRequest& r, const Config& config, SharedState* shared);

class MetricsServer {
 public:
  static constexpr size_t kMaxRequestBytes = 8 * 1024;
  static constexpr size_t kMaxConnections = 32;
  static constexpr int64_t kRequestTimeoutNs = 30'000'000'000;

  explicit MetricsServer(Worker* worker);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // A connection accepted on the metrics listener.
  void Adopt(int fd);
  // Completions tagged kOpMetricsRecv / kOpMetricsSend.
  void OnRecv(uint32_t slot, uint32_t generation, const io_uring_cqe& cqe);
  void OnSend(uint32_t slot, uint32_t generation, const io_uring_cqe& cqe);
  // Every worker's part is in (AdminConsole::Finish): answer the scrape. Takes ownership.
  void OnGathered(AdminRequest* r);
  // From the worker's maintenance tick: close connections past their deadline.
  void Upkeep(int64_t now_ns);

 private:
  struct Conn {
    int fd = -1;
    uint32_t generation = 0;
    bool in_use = false;
    int pending = 0;         // SQEs in flight that will still post a completion
    bool closing = false;    // close once nothing is pending
    bool shut_down = false;  // shutdown(2) issued to end what is pending
    bool gathering = false;  // waiting for the workers' parts; nothing in flight
    bool keep_alive = true;
    bool http10 = false;     // an HTTP/1.0 client keeps the connection only if told so
    bool head_only = false;  // HEAD: the headers of the GET answer, no body
    bool draining = false;   // answered with a close: our side is shut, reading until EOF
    int64_t deadline_ns = 0;
    std::string in;          // received, not yet parsed
    std::string out;         // the answer being sent
    size_t out_off = 0;
    char buf[2048];          // recv target; the connection's address is stable (unique_ptr)
  };

  Conn* Find(uint32_t slot, uint32_t generation);
  void ArmRecv(uint32_t slot, Conn* c);
  void ArmSend(uint32_t slot, Conn* c);
  // Parses what has arrived; answers, starts a gather, or reads on.
  void Process(uint32_t slot, Conn* c);
  void Respond(uint32_t slot, Conn* c, int status, const char* reason, const std::string& content_type,
               const std::string& body, const char* extra_headers = "");
  void Close(uint32_t slot, Conn* c);
  void FreeIfDone(Conn* c);

  Worker* worker_;
  std::vector<std::unique_ptr<Conn>> conns_;  // by slot
  size_t live_ = 0;
};

}  // namespace rb::engine
