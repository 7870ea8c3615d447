#pragma once

/// The job journal: every accepted task is written here before the webhook is answered, with a
/// checkpoint after each step of its run, so a restart resumes it instead of losing it. It is
/// also the history operators read: every run of a task with its attempts and ending.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

namespace iea::journal {

/// The journal cannot be used: unreadable, damaged, not writable, or from a newer version.
/// The service refuses to start rather than run without it.
class JournalError final : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

using JobId = std::int64_t;
using SystemClock = std::chrono::system_clock;

/// Terminal states a job can end in; a job without one is unfinished and is resumed.
inline constexpr std::string_view kRunning = "running";

/// A job as recorded, with every checkpoint of its run so far (by key, in order of writing).
struct JobRecord {
    JobId id = 0;
    std::string task_id;
    std::string delivery_id;
    SystemClock::time_point received_at;
    std::string state;  ///< kRunning or a terminal state
    int resumes = 0;          ///< Times a restart picked this job up again.
    int stalled_resumes = 0;  ///< Of those, the latest ones in a row with no step recorded between.
    std::vector<std::pair<std::string, nlohmann::json>> checkpoints;
    std::string damaged;  ///< Why the job's record cannot be used; empty when it can.
};

/// Time a resumed job gets to record a new step before another resume counts against it.
inline constexpr std::chrono::milliseconds kCatchUpTime{30000};

/// GET /tasks/{task_id} shows at most this many runs, newest first.
inline constexpr std::size_t kHistoryRuns = 50;

/// The newest schema version this build writes; older files are migrated on open.
inline constexpr int kSchemaVersion = 2;

/// One step of a run as the history shows it.
struct HistoryStep {
    std::string key;
    nlohmann::json value;
    std::int64_t at_ms = 0;
};

/// One run as the history shows it.
struct HistoryRun {
    JobId id = 0;
    std::string delivery_id;
    std::int64_t received_at_ms = 0;
    std::string state;
    std::optional<std::int64_t> ended_at_ms;
    int resumes = 0;
    std::string instance;  ///< The instance that took it last (several instances on Redis).
    std::vector<HistoryStep> steps;
};

/// The body of GET /tasks/{task_id}: `runs` newest first. Both backends answer in this shape.
[[nodiscard]] nlohmann::json history_body(const std::string& task_id,
                                          const std::vector<HistoryRun>& runs);

/// Where jobs and their checkpoints are kept: the SQLite file of one instance, or Redis shared
/// by several. The pipeline records through this and never knows which.
class Journal {
public:
    virtual ~Journal() = default;

    /// Where it is, for logs (a path, or a Redis address without its password).
    [[nodiscard]] virtual std::string location() const = 0;

    /// Records an accepted job durably. Nothing when `delivery_id` was recorded before (a
    /// redelivery, even across restarts).
    [[nodiscard]] virtual boost::asio::awaitable<std::optional<JobId>> record_job(
        std::string task_id, std::string delivery_id, SystemClock::time_point received_at) = 0;

    /// Records the outcome of one step under `key`; a later write of the same key replaces it.
    [[nodiscard]] virtual boost::asio::awaitable<void> record_checkpoint(JobId job,
                                                                         std::string key,
                                                                         nlohmann::json value) = 0;

    /// Records how the job ended; it is not resumed after this.
    [[nodiscard]] virtual boost::asio::awaitable<void> record_ending(JobId job,
                                                                     std::string state) = 0;

    /// A task's runs, newest first (at most kHistoryRuns), for GET /tasks/{task_id}.
    [[nodiscard]] virtual boost::asio::awaitable<nlohmann::json> task_history(
        std::string task_id) = 0;

    /// Nothing when the journal can be written now, or why it cannot.
    [[nodiscard]] virtual std::optional<std::string> problem() const = 0;
};

/// The embedded journal: one SQLite file in WAL mode with synchronous commits, owned by one
/// process. All SQLite work happens on the journal's own thread, so a commit's fsync never
/// stalls the event loop; the coroutine methods hop there and back. Thread-safe.
class SqliteJournal final : public Journal {
    class Database;

public:
    /// Opens (or creates) the journal at `path`, creating missing folders, checking the file
    /// and migrating an older schema. Throws JournalError with the reason in plain words.
    static std::unique_ptr<SqliteJournal> open(const std::filesystem::path& path);
    ~SqliteJournal() override;
    SqliteJournal(const SqliteJournal&) = delete;
    SqliteJournal& operator=(const SqliteJournal&) = delete;

    [[nodiscard]] const std::filesystem::path& path() const { return path_; }
    [[nodiscard]] std::string location() const override { return path_.string(); }

    [[nodiscard]] boost::asio::awaitable<std::optional<JobId>> record_job(
        std::string task_id, std::string delivery_id, SystemClock::time_point received_at) override;
    [[nodiscard]] boost::asio::awaitable<void> record_checkpoint(JobId job, std::string key,
                                                                 nlohmann::json value) override;
    [[nodiscard]] boost::asio::awaitable<void> record_ending(JobId job, std::string state) override;
    [[nodiscard]] boost::asio::awaitable<nlohmann::json> task_history(std::string task_id) override;
    [[nodiscard]] std::optional<std::string> problem() const override;

    /// Every unfinished job, oldest first, each counted as resumed once more.
    [[nodiscard]] std::vector<JobRecord> take_unfinished_jobs();

    // Blocking forms, for tools and tests that have no event loop.
    [[nodiscard]] std::optional<JobId> record_job_now(const std::string& task_id,
                                                      const std::string& delivery_id,
                                                      SystemClock::time_point received_at);
    void record_checkpoint_now(JobId job, const std::string& key, const nlohmann::json& value);
    void record_ending_now(JobId job, const std::string& state);
    [[nodiscard]] nlohmann::json task_history_now(const std::string& task_id);

private:
    SqliteJournal(std::filesystem::path path, std::unique_ptr<Database> database);

    std::filesystem::path path_;
    std::unique_ptr<Database> database_;
};

}  // namespace iea::journal
