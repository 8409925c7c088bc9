// rb-fake-backend: a minimal PostgreSQL server, so that a benchmark through a pooler measures
// the pooler and not PostgreSQL.
//
//   rb-fake-backend [--listen ADDR] [--port P] [--unix-dir DIR] [--threads T]
//                   [--rows N] [--row-bytes B]
//
// Anyone logs in (trust), and gets PostgreSQL 15's ParameterStatus set (application_name and
// reported parameters given at startup are echoed back). Every statement is answered at once:
//   - SELECT and anything unrecognised: one int4 column "?column?", N rows of "1" (--rows), or
//     text values of B bytes (--row-bytes), then CommandComplete "SELECT N";
//   - SET / RESET / DISCARD ALL / BEGIN / COMMIT / ROLLBACK / DEALLOCATE: their command tag and
//     their effect on the transaction status and the reported parameters, which are reported
//     (ParameterStatus) before ReadyForQuery, as PostgreSQL 14+ does;
//   - an empty query: EmptyQueryResponse;
//   - the extended protocol (Parse/Bind/Describe/Execute/Close/Flush/Sync), pipelined: answers
//     in order, ReadyForQuery only on Sync, errors discard up to the Sync.
// CancelRequests are accepted and ignored; SSL and GSS encryption requests are refused ('N').
//
// Each thread has its own io_uring and its own SO_REUSEPORT listener; all replies to one
// received chunk leave in one send. SIGINT or SIGTERM stops it.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "netio/listener.h"
#include "tools/common/flags.h"
#include "tools/fake_backend/backend.h"

namespace {

constexpr char kUsage[] =
    "usage: rb-fake-backend [options]\n"
    "\n"
    "A minimal PostgreSQL server for pooler-bound benchmarks: trust login, PostgreSQL 15's\n"
    "ParameterStatus set, and a canned one-row result for every SELECT, over the simple and\n"
    "the extended protocol (pipelining included). SET, RESET, DISCARD ALL, BEGIN, COMMIT and\n"
    "ROLLBACK behave as in PostgreSQL as far as a pooler can see. Stops on SIGINT or SIGTERM.\n";

constexpr int kBacklog = 4096;

}  // namespace

int main(int argc, char** argv) {
  using rb::fake_backend::BackendThread;
  std::string listen = "127.0.0.1";
  int64_t port = 5432;
  std::string unix_dir;
  int64_t threads = std::max(1u, std::thread::hardware_concurrency());
  int64_t rows = 1;
  int64_t row_bytes = 0;
  rb::tools::FlagSet flags(kUsage);
  flags.Add("listen", &listen, "TCP address to listen on (\"*\": all; \"\": no TCP)");
  flags.Add("port", &port, "TCP port, also the unix socket's name .s.PGSQL.<port>");
  flags.Add("unix-dir", &unix_dir, "also listen on DIR/.s.PGSQL.<port>");
  flags.Add("threads", &threads, "threads, each with its own io_uring and listener");
  flags.Add("rows", &rows, "rows in each SELECT result");
  flags.Add("row-bytes", &row_bytes, "0: each row is int4 \"1\"; B > 0: a text value of B bytes");
  std::vector<std::string> positional;
  absl::Status parsed = flags.Parse(argc, argv, &positional);
  if (flags.help_requested()) {
    fputs(flags.Usage().c_str(), stdout);
    return 0;
  }
  if (parsed.ok() && !positional.empty()) parsed = absl::InvalidArgumentError("unexpected argument " + positional[0]);
  if (parsed.ok() && (port < 1 || port > 65535)) parsed = absl::InvalidArgumentError("--port must be 1..65535");
  if (parsed.ok() && (threads < 1 || threads > 256)) parsed = absl::InvalidArgumentError("--threads must be 1..256");
  if (parsed.ok() && (rows < 0 || row_bytes < 0 || row_bytes > (64 << 20))) {
    parsed = absl::InvalidArgumentError("--rows must be >= 0, --row-bytes 0..64 MiB");
  }
  if (parsed.ok() && listen.empty() && unix_dir.empty()) parsed = absl::InvalidArgumentError("nothing to listen on");
  if (!parsed.ok()) {
    fprintf(stderr, "rb-fake-backend: %s (see --help)\n", std::string(parsed.message()).c_str());
    return 2;
  }

  // Signals are taken by sigwait below, never by a worker thread.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  const uint64_t fd_limit = rb::tools::RaiseOpenFilesLimit();
  rb::fake_backend::Shared shared;
  shared.features = rb::netio::ProbeFeatures();
  if (std::string missing; !shared.features.MeetsFloor(&missing)) {
    fprintf(stderr, "rb-fake-backend: the kernel lacks %s\n", missing.c_str());
    return 1;
  }
  shared.replies.Build(rows, row_bytes);

  // Every thread gets its own socket in the port's SO_REUSEPORT group: the kernel spreads
  // connections over them. All are bound here, so a port in use fails before anything starts.
  std::vector<std::vector<int>> tcp_fds(threads);
  std::string where;
  if (!listen.empty()) {
    auto addrs = rb::netio::ResolveListenAddress(listen, static_cast<uint16_t>(port));
    if (!addrs.ok()) {
      fprintf(stderr, "rb-fake-backend: %s\n", std::string(addrs.status().message()).c_str());
      return 1;
    }
    rb::netio::TcpOptions options;
    options.backlog = kBacklog;
    for (const sockaddr_storage& addr : *addrs) {
      for (auto& fds : tcp_fds) {
        absl::StatusOr<int> fd = rb::netio::ListenTcp(addr, options);
        if (!fd.ok()) {
          fprintf(stderr, "rb-fake-backend: %s\n", std::string(fd.status().message()).c_str());
          return 1;
        }
        fds.push_back(*fd);
      }
      absl::StrAppend(&where, where.empty() ? "" : ", ", rb::netio::DescribeSocketAddress(addr, sizeof addr));
    }
  }
  std::string unix_path;
  if (!unix_dir.empty()) {
    unix_path = absl::StrCat(unix_dir, "/.s.PGSQL.", port);
    absl::StatusOr<int> fd = rb::netio::ListenUnix(unix_path, kBacklog, 0777, "");
    if (!fd.ok()) {
      fprintf(stderr, "rb-fake-backend: %s\n", std::string(fd.status().message()).c_str());
      return 1;
    }
    shared.unix_fd = *fd;
    absl::StrAppend(&where, where.empty() ? "" : ", ", "unix:", unix_path);
  }

  shared.ring_fds = std::make_unique<std::atomic<int>[]>(threads);
  for (int64_t i = 0; i < threads; ++i) {
    shared.mailboxes.push_back(std::make_unique<rb::netio::Mailbox>(static_cast<uint32_t>(threads), 1024));
  }
  std::vector<std::unique_ptr<BackendThread>> backends;
  std::vector<std::thread> running;
  std::atomic<bool> failed{false};
  for (int64_t i = 0; i < threads; ++i) {
    backends.push_back(std::make_unique<BackendThread>(static_cast<int>(i), &shared, tcp_fds[i]));
    running.emplace_back([&, i] {
      if (!backends[i]->Run()) {
        failed.store(true);
        kill(getpid(), SIGTERM);  // wakes sigwait: a thread that can't run stops the server
      }
    });
  }
  fprintf(stderr, "rb-fake-backend: listening on %s with %lld threads (up to %llu connections: the open-files limit)\n",
          where.c_str(), static_cast<long long>(threads), static_cast<unsigned long long>(fd_limit));

  int sig = 0;
  sigwait(&signals, &sig);
  shared.stop.store(true);
  for (std::thread& t : running) t.join();
  if (!unix_path.empty()) unlink(unix_path.c_str());
  return failed.load() ? 1 : 0;
}
