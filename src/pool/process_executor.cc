#include "pool/process_executor.h"

#include <unistd.h>

#include <climits>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <future>
#include <thread>

#include "pool/worker_process.h"

namespace corral {

// Runs worker starts one at a time on a thread that lives as long as the executor.
class SpawnerThread {
 public:
  struct Started {
    std::unique_ptr<WorkerProcess> worker;
    std::string error;  // why there is no worker
  };

  SpawnerThread() : thread_([this] { loop(); }) {}
  ~SpawnerThread() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    jobs_changed_.notify_all();
    thread_.join();
  }

  // Blocks until the worker is started or has failed to start.
  Started start(const WorkerSpec& spec) {
    Job job{spec, {}};
    std::future<Started> started = job.promise.get_future();
    {
      std::lock_guard lock(mutex_);
      jobs_.push_back(std::move(job));
    }
    jobs_changed_.notify_one();
    return started.get();
  }

 private:
  struct Job {
    WorkerSpec spec;
    std::promise<Started> promise;
  };

  void loop() {
    std::unique_lock lock(mutex_);
    for (;;) {
      jobs_changed_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (stopping_) return;
      Job job = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      // The error travels as text, as in TenantPool: an exception_ptr's shared reference count
      // is invisible to ThreadSanitizer.
      Started started;
      try {
        started.worker = std::make_unique<WorkerProcess>(job.spec);
      } catch (const std::exception& error) {
        started.error = error.what();
      }
      job.promise.set_value(std::move(started));
      lock.lock();
    }
  }

  std::mutex mutex_;
  std::condition_variable jobs_changed_;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  std::thread thread_;  // last: started once everything above exists
};

ProcessExecutor::ProcessExecutor(Options options)
    : options_(std::move(options)), spawner_(std::make_unique<SpawnerThread>()) {}

ProcessExecutor::~ProcessExecutor() = default;

InvocationResult ProcessExecutor::run(const InvocationRequest& request) {
  std::unique_ptr<WorkerProcess> worker = take_idle_worker();
  if (!worker) {
    SpawnerThread::Started started = spawner_->start(spec());
    if (!started.worker) {
      InvocationResult result;
      result.invocation_id = request.invocation_id;
      result.outcome = Outcome::crashed;
      result.message = started.error;
      return result;
    }
    worker = std::move(started.worker);
    std::lock_guard lock(mutex_);
    ++workers_started_;
  }
  InvocationResult result =
      worker->invoke(request, std::chrono::milliseconds(options_.kill_grace_ms));
  // Only a worker whose run ended normally serves again: after a limit, a crash or a protocol
  // error its state is not to be trusted.
  if (worker->alive() &&
      (result.outcome == Outcome::ok || result.outcome == Outcome::script_error)) {
    return_worker(std::move(worker));
  }
  return result;
}

WorkerSpec ProcessExecutor::spec() const {
  WorkerSpec spec;
  spec.worker_path = options_.worker_path;
  spec.max_frame_bytes = options_.max_frame_bytes;
  return spec;
}

uint64_t ProcessExecutor::workers_started() const {
  std::lock_guard lock(mutex_);
  return workers_started_;
}

std::unique_ptr<WorkerProcess> ProcessExecutor::take_idle_worker() {
  std::lock_guard lock(mutex_);
  if (idle_.empty()) return nullptr;
  auto worker = std::move(idle_.back());
  idle_.pop_back();
  return worker;
}

void ProcessExecutor::return_worker(std::unique_ptr<WorkerProcess> worker) {
  std::lock_guard lock(mutex_);
  if (idle_.size() < options_.max_idle_workers) idle_.push_back(std::move(worker));
}

std::string default_worker_path() {
  if (const char* configured = std::getenv("CORRAL_WORKER")) return configured;
  char self[PATH_MAX];
  ssize_t length = readlink("/proc/self/exe", self, sizeof self - 1);
  if (length <= 0) return "corral-worker";
  self[length] = '\0';
  return (std::filesystem::path(self).parent_path() / "corral-worker").string();
}

}  // namespace corral
