// rb-loadgen's settings, as parsed from the command line (main.cc) and shared read-only by
// every worker thread.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>

namespace rb::loadgen {

enum class Mode : uint8_t { kIdle, kLogins, kQuery };

struct Options {
  Mode mode = Mode::kQuery;
  int64_t clients = 10;  // idle: N, the clients to log in; otherwise concurrent clients
  std::string host = "127.0.0.1";
  int64_t port = 5432;
  std::string user = "postgres";
  std::string password;
  std::string dbname;  // empty: the user name, as libpq does
  double connect_timeout = 10;
  double duration = 10;
  double hold = 10;
  int64_t count = 0;       // 0: no bound but the duration
  double rate_limit = 0;   // per second, over all clients; 0: as fast as possible
  int64_t threads = 1;
  int64_t procs = 1;
  int64_t login_window = 256;  // logins in progress at once, over all workers
  std::string sql = "SELECT 1";
  std::string protocol = "simple";
  bool prepared = false;
  int64_t pipeline = 1;
  bool allow_errors = false;

  // Derived by main.
  bool extended = false;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string target;  // "127.0.0.1:6432" or "unix:/tmp/.s.PGSQL.6432"
  // Loopback TCP targets: connections are spread over this many source addresses 127.0.0.x,
  // so that more than one address's worth of ephemeral ports can be used (1: no bind).
  int source_addresses = 1;
};

const char* ModeName(Mode mode);

// What one worker thread does: its share of the clients, of --count and of --rate-limit.
struct WorkerPlan {
  int index = 0;              // over all processes
  int64_t first_client = 0;   // global index of its first client (source-address choice)
  int64_t clients = 0;
  int64_t count = 0;          // 0: unbounded
  double rate = 0;            // per second; 0: unbounded
  int64_t login_window = 1;
};

}  // namespace rb::loadgen
