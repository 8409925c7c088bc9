#include "tests/support/instance_group.h"

#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "tests/support/paths.h"

namespace rb::test {
namespace {

using Clock = std::chrono::steady_clock;

std::string SocketActivatePath() { return BinaryDir() + "/tools/socket_activate/rb-socket-activate"; }

std::string Tail(const std::string& text, size_t bytes) {
  return text.size() <= bytes ? text : "..." + text.substr(text.size() - bytes);
}

}  // namespace

InstanceGroup::InstanceGroup(const PgCluster& pg, InstanceGroupOptions options)
    : dir_("rb-group", /*chown_to_postgres=*/options.as_postgres) {
  shared_port_ = FreeTcpPort();
  instances_.resize(static_cast<size_t>(options.instances));
  for (Instance& inst : instances_) {
    do {
      inst.admin_port = FreeTcpPort();
    } while (inst.admin_port == shared_port_);
  }

  // The shared file: everything the instances have in common. It ends in [pgbouncer], which the
  // instance files continue after their %include (a second [pgbouncer] header would reset it).
  std::map<std::string, std::string> settings = {
      {"listen_addr", "127.0.0.1"},
      {"listen_port", std::to_string(shared_port_)},
      {"unix_socket_dir", Dir()},
      {"auth_type", "md5"},
      {"auth_file", dir_.File("userlist.txt")},
      {"admin_users", std::string(kAdminUser)},
      {"pool_mode", "transaction"},
      {"default_pool_size", "10"},
      {"max_client_conn", "2000"},
      {"workers", std::to_string(options.workers)},
      {"ignore_startup_parameters", "extra_float_digits"},
      {"server_login_retry", "1"},
  };
  for (const auto& [key, value] : options.settings) settings[key] = value;
  std::ostringstream shared;
  shared << ";; shared by the " << instances_.size() << " instances of this group\n\n[databases]\n"
         << kTestDb << " = host=127.0.0.1 port=" << pg.Port() << " dbname=" << kTestDb << "\n\n[peers]\n";
  for (size_t i = 0; i < instances_.size(); ++i) {
    shared << i + 1 << " = host=" << Dir() << " port=" << instances_[i].admin_port << "\n";
  }
  shared << "\n[pgbouncer]\n";
  for (const auto& [key, value] : settings) {
    if (!value.empty()) shared << key << " = " << value << "\n";
  }
  dir_.WriteFile("pgbouncer.ini", shared.str());
  dir_.WriteFile("userlist.txt", pg.UserlistEntry("rb_md5") + "\n" + pg.UserlistEntry("rb_scram") + "\n" +
                                     "\"rb_trust\" \"\"\n\"" + std::string(kAdminUser) + "\" \"" +
                                     std::string(kAdminPassword) + "\"\n");
  std::filesystem::create_directories(dir_.File("instance.d"));

  for (size_t i = 0; i < instances_.size(); ++i) {
    Instance& inst = instances_[i];
    const std::string port = std::to_string(inst.admin_port);
    dir_.WriteFile("instance.d/" + port + ".ini",
                   "%include " + SharedConfigPath() + "\npeer_id = " + std::to_string(i + 1) + "\n");
    const std::string name = ",name=ringbouncer-" + port;
    std::vector<std::string> argv = {
        SocketActivatePath(),
        "--tcp", "127.0.0.1:" + std::to_string(shared_port_) + ",reuseport" + name,
        "--tcp", "127.0.0.1:" + port + ",reuseport" + name,
        "--unix", UnixSocketPath(static_cast<int>(i)) + name,
        "--notify-log", dir_.File(port + ".notify"),
    };
    if (options.as_postgres && geteuid() == 0) {
      argv.push_back("--user");
      argv.push_back("postgres");
    }
    argv.push_back("--");
    argv.push_back(RingbouncerPath());
    argv.push_back(InstanceConfigPath(static_cast<int>(i)));
    inst.process.emplace(SubprocessOptions{.argv = argv});
  }

  const auto deadline = Clock::now() + options.start_timeout;
  for (size_t i = 0; i < instances_.size(); ++i) {
    for (;;) {
      if (NotifyLog(static_cast<int>(i)).find("READY=1") != std::string::npos) break;
      if (!instances_[i].process->Running() || Clock::now() >= deadline) {
        std::string why = "instance " + std::to_string(i + 1) + " (admin port " +
                          std::to_string(instances_[i].admin_port) + ") never said READY=1\n" + Describe();
        for (Instance& inst : instances_) inst.process->KillAndWait();
        throw std::runtime_error(why);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
}

InstanceGroup::~InstanceGroup() {
  for (Instance& inst : instances_) {
    if (inst.process && inst.process->Running()) inst.process->Kill(SIGQUIT);
  }
  for (Instance& inst : instances_) {
    if (inst.process && !inst.process->Wait(std::chrono::seconds(5))) inst.process->KillAndWait();
  }
}

std::string InstanceGroup::UnixSocketPath(int i) const {
  return dir_.File(".s.PGSQL." + std::to_string(AdminPort(i)));
}

std::string InstanceGroup::InstanceConfigPath(int i) const {
  return dir_.File("instance.d/" + std::to_string(AdminPort(i)) + ".ini");
}

std::string InstanceGroup::ConnString(std::string_view user, std::string_view db, std::string_view extra) const {
  std::string s = "host=127.0.0.1 port=" + std::to_string(shared_port_) + " dbname=" + std::string(db) +
                  " user=" + std::string(user) + " connect_timeout=10";
  std::string_view password = PgCluster::PasswordOf(user);
  if (!password.empty()) s += " password=" + ConnInfoQuote(password);
  if (!extra.empty()) s += " " + std::string(extra);
  return s;
}

std::string InstanceGroup::UnixConnString(int i, std::string_view user, std::string_view db,
                                          std::string_view extra) const {
  std::string s = "host=" + Dir() + " port=" + std::to_string(AdminPort(i)) + " dbname=" + std::string(db) +
                  " user=" + std::string(user) + " connect_timeout=10";
  std::string_view password = PgCluster::PasswordOf(user);
  if (!password.empty()) s += " password=" + ConnInfoQuote(password);
  if (!extra.empty()) s += " " + std::string(extra);
  return s;
}

std::string InstanceGroup::AdminConnString(int i, std::string_view password) const {
  return "host=127.0.0.1 port=" + std::to_string(AdminPort(i)) + " dbname=pgbouncer user=" +
         std::string(kAdminUser) + " password=" + ConnInfoQuote(password) + " connect_timeout=10";
}

int InstanceGroup::PeerOfBackendPid(int pid) {
  const auto key = static_cast<uint32_t>(pid);
  return static_cast<int>(((key >> 16) & 0xff) | (((key >> 8) & 0xff) << 8));
}

int InstanceGroup::WorkerOfBackendPid(int pid) { return static_cast<int>(static_cast<uint32_t>(pid) & 0xff); }

pid_t InstanceGroup::RingbouncerPid(int i) const {
  const pid_t launcher = LauncherPid(i);
  std::ifstream children("/proc/" + std::to_string(launcher) + "/task/" + std::to_string(launcher) + "/children");
  pid_t child = -1;
  if (children >> child) return child;
  return -1;
}

void InstanceGroup::Signal(int i, int sig) { instances_.at(i).process->Kill(sig); }

bool InstanceGroup::Running(int i) { return instances_.at(i).process->Running(); }

std::optional<int> InstanceGroup::Wait(int i, std::chrono::milliseconds timeout) {
  return instances_.at(i).process->Wait(timeout);
}

std::string InstanceGroup::Log(int i) const {
  const Subprocess& p = *instances_.at(i).process;
  return p.Stdout() + p.Stderr();
}

std::string InstanceGroup::NotifyLog(int i) const {
  std::ifstream in(dir_.File(std::to_string(AdminPort(i)) + ".notify"));
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string InstanceGroup::Describe() const {
  std::string out;
  for (int i = 0; i < Size(); ++i) {
    out += "--- instance " + std::to_string(i + 1) + " (admin port " + std::to_string(AdminPort(i)) + ") ---\n" +
           Tail(Log(i), 3000) + "\n";
  }
  return out;
}

}  // namespace rb::test
