#include "tools/common/conn_set.h"

#include <sys/resource.h>

namespace rb::tools {

absl::StatusOr<ThreadRing> CreateThreadRing(const netio::Features& features, uint32_t buffer_count,
                                            uint32_t buffer_size) {
  netio::RingOptions options;
  options.setup_flags = features.WorkerSetupFlags();
  options.register_ring_fd = features.register_ring_fd;
  ThreadRing tr;
  absl::StatusOr<std::unique_ptr<netio::Ring>> ring = netio::Ring::Create(options);
  if (!ring.ok()) return ring.status();
  tr.ring = std::move(*ring);
  absl::StatusOr<std::unique_ptr<netio::BufferRing>> buffers =
      netio::BufferRing::Create(tr.ring->raw(), kBufferGroup, buffer_count, buffer_size, false);
  if (!buffers.ok()) return buffers.status();
  tr.buffers = std::move(*buffers);
  return tr;
}

uint64_t RaiseOpenFilesLimit() {
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);
  getrlimit(RLIMIT_NOFILE, &limit);
  return limit.rlim_cur;
}

}  // namespace rb::tools
