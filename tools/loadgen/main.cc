// rb-loadgen: the load generator of ringbouncer's perf harness, on io_uring.
//
//   rb-loadgen idle N [options]   log N clients in, hold them (--hold), report how many made it
//   rb-loadgen logins [options]   connect, authenticate, disconnect, in a loop: logins/s
//   rb-loadgen query [options]    --sql in a loop, simple or extended protocol, pipelined:
//                                 TPS and a latency histogram
//
// Common options: --host (an address, or a unix socket directory), --port, --user, --password
// (default $PGPASSWORD), --dbname, --clients, --threads, --procs, --duration, --count,
// --rate-limit, --connect-timeout, --allow-errors. See --help for all.
//
// One JSON object on stdout, a summary on stderr. Errors are counted by SQLSTATE and message,
// never hidden: the exit status is 1 when any happened (unless --allow-errors), 2 for a usage
// or setup problem. Every run stops by itself: after --duration (query, logins), after --hold
// (idle), after --count, or on SIGINT/SIGTERM.
//
// Each thread has its own io_uring (--threads). Past what one process may hold (its open-files
// limit, raised here to the hard limit), --procs forks worker processes that split the clients;
// their Stats live in one shared mapping and are merged here. Loopback TCP connections beyond
// one source address's ephemeral ports are spread over 127.0.0.2, 127.0.0.3, ...
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "netio/features.h"
#include "proto/scram.h"
#include "tools/common/conn_set.h"
#include "tools/common/flags.h"
#include "tools/loadgen/options.h"
#include "tools/loadgen/report.h"
#include "tools/loadgen/stats.h"
#include "tools/loadgen/worker.h"

namespace rb::loadgen {
namespace {

constexpr char kUsage[] =
    "usage: rb-loadgen MODE [N] [options]\n"
    "\n"
    "Modes:\n"
    "  idle N   log N clients in (startup and authentication) and hold them for --hold seconds\n"
    "           or until SIGINT/SIGTERM; reports how many logged in and how long that took.\n"
    "           Up to 100,000: past one process's open-files limit use --procs.\n"
    "  logins   connect, authenticate, disconnect in a loop with --clients at once; reports\n"
    "           logins/s and the login latency.\n"
    "  query    --clients clients run --sql in a loop (--protocol simple|extended, --prepared,\n"
    "           --pipeline K requests in flight each); reports TPS and latency percentiles.\n"
    "\n"
    "Authentication is whatever the server asks for: trust, password, md5 or SCRAM-SHA-256.\n"
    "The run stops by itself (--duration, --hold, --count). One JSON object goes to stdout, a\n"
    "summary to stderr. Exit status: 0; 1 if any error happened (unless --allow-errors);\n"
    "2 for a usage or setup problem.\n"
    "\n"
    "Examples:\n"
    "  rb-loadgen query --port 6432 --user bench --clients 50 --duration 10\n"
    "  rb-loadgen query --host /tmp --port 6432 --user bench --protocol extended --pipeline 4\n"
    "  rb-loadgen logins --user rb_scram --password scrampass --dbname rbtest --clients 8\n"
    "  rb-loadgen idle 100000 --procs 6 --port 6432 --user bench --hold 60\n";

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop.store(true); }

double Seconds(const timeval& tv) { return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6; }

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// The ephemeral ports one source address offers towards one destination (most of them: the
// kernel also needs some for everything else).
int64_t PortsPerSourceAddress() {
  int64_t low = 32768, high = 60999;
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> low >> high;
  return std::max<int64_t>((high - low + 1) * 3 / 4, 1);
}

absl::Status ResolveTarget(Options* o) {
  if (!o->host.empty() && o->host[0] == '/') {
    // A directory, as libpq reads host=: the socket is DIR/.s.PGSQL.<port>.
    sockaddr_un* un = reinterpret_cast<sockaddr_un*>(&o->addr);
    std::string path = absl::StrCat(o->host, "/.s.PGSQL.", o->port);
    if (path.size() >= sizeof un->sun_path) return absl::InvalidArgumentError("unix socket path too long: " + path);
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path, path.c_str(), path.size() + 1);
    o->addr_len = sizeof(sockaddr_un);
    o->target = "unix:" + path;
    return absl::OkStatus();
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  int rc = getaddrinfo(o->host.c_str(), std::to_string(o->port).c_str(), &hints, &result);
  if (rc != 0) return absl::InvalidArgumentError(absl::StrCat("--host ", o->host, ": ", gai_strerror(rc)));
  std::memcpy(&o->addr, result->ai_addr, result->ai_addrlen);
  o->addr_len = result->ai_addrlen;
  freeaddrinfo(result);
  o->target = absl::StrCat(o->host, ":", o->port);
  const auto* in = reinterpret_cast<const sockaddr_in*>(&o->addr);
  const bool loopback_v4 = o->addr.ss_family == AF_INET && (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  const int64_t per_address = PortsPerSourceAddress();
  if (loopback_v4 && o->clients > per_address) {
    o->source_addresses = static_cast<int>(std::min<int64_t>((o->clients + per_address - 1) / per_address, 254));
  }
  return absl::OkStatus();
}

// Parses the command line into `o`. Returns 0 to go on, or the exit status.
int ParseOptions(int argc, char** argv, Options* o) {
  if (const char* pw = getenv("PGPASSWORD")) o->password = pw;
  tools::FlagSet flags(kUsage);
  flags.Add("host", &o->host, "server address, or a unix socket directory (starts with /)");
  flags.Add("port", &o->port, "server port");
  flags.Add("user", &o->user, "user name");
  flags.Add("password", &o->password, "password (default: $PGPASSWORD)");
  flags.Add("dbname", &o->dbname, "database (default: the user name)");
  flags.Add("clients", &o->clients, "logins: logins in progress at once; query: concurrent clients");
  flags.Add("duration", &o->duration, "logins, query: seconds to run (after the first logins)");
  flags.Add("count", &o->count, "logins, query: stop after this many logins or requests (0: no bound)");
  flags.Add("hold", &o->hold, "idle: seconds to hold the clients once all tried to log in");
  flags.Add("connect-timeout", &o->connect_timeout, "seconds a login (connect to ReadyForQuery) may take");
  flags.Add("rate-limit", &o->rate_limit, "logins or requests per second over all clients (0: no limit)");
  flags.Add("sql", &o->sql, "query: the SQL text of each request");
  flags.Add("protocol", &o->protocol, "query: simple (Query) or extended (Parse/Bind/Describe/Execute/Sync)");
  flags.Add("prepared", &o->prepared, "query: Parse a named statement once per connection (implies extended)");
  flags.Add("pipeline", &o->pipeline, "query: requests in flight per client");
  flags.Add("threads", &o->threads, "threads per process, one io_uring each");
  flags.Add("procs", &o->procs, "processes, splitting the clients (for more than one process's fds)");
  flags.Add("login-window", &o->login_window, "logins in progress at once while logging clients in");
  flags.Add("allow-errors", &o->allow_errors, "exit 0 even if errors happened");
  std::vector<std::string> positional;
  absl::Status status = flags.Parse(argc, argv, &positional);
  if (flags.help_requested()) {
    fputs(flags.Usage().c_str(), stdout);
    return -1;
  }
  auto fail = [](const std::string& message) {
    fprintf(stderr, "rb-loadgen: %s (see --help)\n", message.c_str());
    return 2;
  };
  if (!status.ok()) return fail(std::string(status.message()));
  if (positional.empty()) return fail("no mode given: idle N, logins or query");
  const std::string& mode = positional[0];
  size_t expected = 1;
  if (mode == "idle") {
    o->mode = Mode::kIdle;
    expected = 2;
    if (positional.size() < 2 || !absl::SimpleAtoi(positional[1], &o->clients) || o->clients < 1) {
      return fail("idle needs the number of clients: idle N");
    }
  } else if (mode == "logins") {
    o->mode = Mode::kLogins;
  } else if (mode == "query") {
    o->mode = Mode::kQuery;
  } else {
    return fail("unknown mode " + mode);
  }
  if (positional.size() > expected) return fail("unexpected argument " + positional[expected]);
  if (o->protocol != "simple" && o->protocol != "extended") return fail("--protocol must be simple or extended");
  if (o->prepared) o->protocol = "extended";
  o->extended = o->protocol == "extended";
  if (o->clients < 1 || o->clients > 10'000'000) return fail("--clients must be 1 or more");
  if (o->pipeline < 1 || o->pipeline > 4096) return fail("--pipeline must be 1..4096");
  if (o->threads < 1 || o->threads > 256 || o->procs < 1 || o->procs > 256) return fail("--threads and --procs must be 1..256");
  if (!(o->duration > 0) || !(o->hold > 0) || !(o->connect_timeout > 0)) {
    return fail("--duration, --hold and --connect-timeout must be positive");
  }
  if (o->count < 0 || o->rate_limit < 0 || o->login_window < 1) return fail("--count, --rate-limit and --login-window can't be negative");
  if (o->port < 1 || o->port > 65535) return fail("--port must be 1..65535");
  // No worker without a client.
  o->procs = std::min(o->procs, o->clients);
  o->threads = std::min(o->threads, (o->clients + o->procs - 1) / o->procs);
  if (absl::Status s = ResolveTarget(o); !s.ok()) return fail(std::string(s.message()));

  // Every client is a descriptor. Raise the soft limit as far as allowed, and refuse up front a
  // run that could not hold its clients rather than report a wall of EMFILE errors.
  const uint64_t limit = tools::RaiseOpenFilesLimit();
  const int64_t per_proc = (o->clients + o->procs - 1) / o->procs + 16 * o->threads + 32;
  if (per_proc > static_cast<int64_t>(limit)) {
    const int64_t usable = static_cast<int64_t>(limit) - 16 * o->threads - 32;
    const int64_t procs = usable > 0 ? (o->clients + usable - 1) / usable : 0;
    fprintf(stderr,
            "rb-loadgen: %lld clients over %lld process(es) need about %lld descriptors each, but the "
            "open-files limit is %llu: use --procs %lld or more\n",
            static_cast<long long>(o->clients), static_cast<long long>(o->procs), static_cast<long long>(per_proc),
            static_cast<unsigned long long>(limit), static_cast<long long>(procs));
    return 2;
  }
  return 0;
}

std::vector<WorkerPlan> MakePlans(const Options& o) {
  const int64_t workers = o.procs * o.threads;
  std::vector<WorkerPlan> plans;
  int64_t first = 0;
  for (int64_t w = 0; w < workers; ++w) {
    WorkerPlan p;
    p.index = static_cast<int>(w);
    p.first_client = first;
    p.clients = o.clients / workers + (w < o.clients % workers ? 1 : 0);
    p.count = o.count == 0 ? 0 : std::max<int64_t>(o.count / workers + (w < o.count % workers ? 1 : 0), 1);
    p.rate = o.rate_limit / static_cast<double>(workers);
    p.login_window = std::max<int64_t>(o.login_window / workers, 1);
    first += p.clients;
    plans.push_back(p);
  }
  return plans;
}

// Runs the threads of process `proc` to the end.
void RunProcess(const Options& o, const std::vector<WorkerPlan>& plans, int64_t proc, Stats* stats,
                const netio::Features& features) {
  proto::ScramKeyCache scram_cache;
  std::vector<std::thread> threads;
  for (int64_t t = 0; t < o.threads; ++t) {
    const WorkerPlan& plan = plans[proc * o.threads + t];
    threads.emplace_back([&, plan] { Worker(o, plan, &stats[plan.index], &scram_cache, &g_stop, features).Run(); });
  }
  for (std::thread& t : threads) t.join();
}

int Main(int argc, char** argv) {
  Options o;
  if (int rc = ParseOptions(argc, argv, &o); rc != 0) return rc < 0 ? 0 : rc;
  const netio::Features features = netio::ProbeFeatures();
  if (std::string missing; !features.MeetsFloor(&missing)) {
    fprintf(stderr, "rb-loadgen: the kernel lacks %s\n", missing.c_str());
    return 2;
  }
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  const std::vector<WorkerPlan> plans = MakePlans(o);
  const size_t workers = plans.size();
  // Shared with the worker processes, so that this process can follow and merge them.
  void* mem = mmap(nullptr, sizeof(Stats) * workers, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    perror("rb-loadgen: mmap");
    return 2;
  }
  Stats* stats = static_cast<Stats*>(mem);
  for (size_t i = 0; i < workers; ++i) new (&stats[i]) Stats();

  const int64_t start = NowNs();
  bool crashed = false;
  std::thread in_process;
  std::vector<pid_t> children;
  if (o.procs == 1) {
    in_process = std::thread([&] { RunProcess(o, plans, 0, stats, features); });
  } else {
    for (int64_t p = 0; p < o.procs; ++p) {
      pid_t pid = fork();
      if (pid < 0) {
        perror("rb-loadgen: fork");
        g_stop.store(true);
        for (size_t i = p * o.threads; i < workers; ++i) stats[i].finished.store(true);
        crashed = true;
        break;
      }
      if (pid == 0) {
        RunProcess(o, plans, p, stats, features);
        _exit(0);
      }
      children.push_back(pid);
    }
  }

  // Follow the run: announce when idle's clients are all in, pass a stop on to the workers,
  // notice a worker process that died.
  bool announced = false, forwarded = false;
  for (;;) {
    bool all_finished = true;
    uint64_t tried = 0, logged_in = 0;
    for (size_t i = 0; i < workers; ++i) {
      all_finished &= stats[i].finished.load();
      logged_in += stats[i].logins.load();
      tried += stats[i].logins.load() + stats[i].login_failures.load();
    }
    if (all_finished) break;
    if (o.mode == Mode::kIdle && !announced && tried >= static_cast<uint64_t>(o.clients)) {
      fprintf(stderr, "rb-loadgen: idle: %llu of %lld clients logged in after %.2f s; holding for %g s\n",
              static_cast<unsigned long long>(logged_in), static_cast<long long>(o.clients),
              static_cast<double>(NowNs() - start) / 1e9, o.hold);
      announced = true;
    }
    if (g_stop.load() && !forwarded) {
      for (pid_t pid : children) kill(pid, SIGTERM);
      forwarded = true;
    }
    for (size_t i = 0; i < children.size(); ++i) {
      int status = 0;
      if (children[i] <= 0 || waitpid(children[i], &status, WNOHANG) != children[i]) continue;
      children[i] = -1;
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "rb-loadgen: worker process %zu died (status %d)\n", i, status);
        crashed = true;
      }
      for (int64_t t = 0; t < o.threads; ++t) stats[i * o.threads + t].finished.store(true);
    }
    usleep(20'000);
  }
  if (in_process.joinable()) in_process.join();
  for (pid_t pid : children) {
    if (pid > 0) waitpid(pid, nullptr, 0);
  }

  Totals totals;
  for (size_t i = 0; i < workers; ++i) totals.Add(stats[i]);
  RunFacts facts;
  facts.elapsed_s = static_cast<double>(NowNs() - start) / 1e9;
  facts.interrupted = g_stop.load();
  for (int who : {RUSAGE_SELF, RUSAGE_CHILDREN}) {
    rusage usage{};
    getrusage(who, &usage);
    facts.cpu_user_s += Seconds(usage.ru_utime);
    facts.cpu_system_s += Seconds(usage.ru_stime);
  }
  fputs(JsonReport(o, totals, facts).c_str(), stdout);
  fflush(stdout);
  fputs(TextSummary(o, totals, facts).c_str(), stderr);
  return crashed || (totals.errors > 0 && !o.allow_errors) ? 1 : 0;
}

}  // namespace
}  // namespace rb::loadgen

int main(int argc, char** argv) { return rb::loadgen::Main(argc, argv); }
