#include "iea/journal/journal.hpp"

#include <sqlite3.h>

#include <functional>
#include <mutex>
#include <type_traits>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/chrono.h>
#include <fmt/format.h>

namespace iea::journal {
namespace {

namespace asio = boost::asio;

std::int64_t to_ms(SystemClock::time_point at) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(at.time_since_epoch()).count();
}

SystemClock::time_point from_ms(std::int64_t ms) {
    return SystemClock::time_point(std::chrono::milliseconds(ms));
}

std::string iso_time(std::int64_t ms) {
    return fmt::format("{:%Y-%m-%dT%H:%M:%S}Z",
                       std::chrono::floor<std::chrono::milliseconds>(from_ms(ms)));
}

// Version 1 had no resume counters and no indexes; version 2 adds them. Each step takes the
// schema from the version before it to its own; a new file runs them all.
constexpr std::string_view kVersion1 = R"(
CREATE TABLE jobs(
    id INTEGER PRIMARY KEY,
    task_id TEXT NOT NULL,
    delivery_id TEXT NOT NULL UNIQUE,
    received_at_ms INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'running',
    ended_at_ms INTEGER);
CREATE TABLE checkpoints(
    job_id INTEGER NOT NULL REFERENCES jobs(id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    written_at_ms INTEGER NOT NULL,
    PRIMARY KEY(job_id, key));
)";
constexpr std::string_view kVersion2 = R"(
ALTER TABLE jobs ADD COLUMN resumes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN stalled_resumes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN checkpoints_seen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN resumed_at_ms INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_by_task ON jobs(task_id);
CREATE INDEX jobs_by_state ON jobs(state);
)";
constexpr std::string_view kMigrations[] = {kVersion1, kVersion2};

static_assert(std::size(kMigrations) == kSchemaVersion);

}  // namespace

/// One SQLite connection, used under a mutex, plus the thread that runs the async calls.
class SqliteJournal::Database final {
public:
    explicit Database(const std::filesystem::path& path) : path_(path) {
        const int opened = sqlite3_open_v2(path.c_str(), &db_,
                                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                               SQLITE_OPEN_FULLMUTEX,
                                           nullptr);
        if (opened != SQLITE_OK) {
            const std::string reason = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(opened);
            sqlite3_close(db_);
            db_ = nullptr;
            fail("cannot be opened", reason);
        }
        try {
            check_and_prepare();
        } catch (...) {
            // The destructor does not run for a constructor that throws.
            sqlite3_close(db_);
            db_ = nullptr;
            throw;
        }
    }

    /// Refuses what cannot be used, then brings the schema up to date.
    void check_and_prepare() {
        if (sqlite3_db_readonly(db_, "main") == 1) {
            fail("is not writable", "the file or its folder is read-only for this user");
        }
        sqlite3_busy_timeout(db_, 1000);
        // One process owns the file: a second instance pointed at it is refused at start
        // instead of interleaving its writes.
        execute("PRAGMA locking_mode=EXCLUSIVE", "cannot be locked");
        if (query_text("PRAGMA journal_mode=WAL", "is not a journal") != "wal") {
            fail("cannot be used", "SQLite refused write-ahead logging for it");
        }
        execute("PRAGMA synchronous=FULL", "cannot be used");
        if (const auto check = query_text("PRAGMA quick_check", "is damaged"); check != "ok") {
            fail("is damaged", check);
        }
        // Takes the exclusive lock now, so a file held by another process fails here.
        execute("BEGIN IMMEDIATE; COMMIT;", "is in use or not writable");
        migrate();
        // A file that claims the right version but lacks a column fails here, not at a task.
        Statement jobs(*this,
                       "SELECT id, task_id, delivery_id, received_at_ms, state, ended_at_ms, "
                       "resumes, stalled_resumes, checkpoints_seen, resumed_at_ms FROM jobs LIMIT 0",
                       "does not have the expected tables");
        Statement checkpoints(*this,
                              "SELECT job_id, key, value, written_at_ms FROM checkpoints LIMIT 0",
                              "does not have the expected tables");
    }

    ~Database() { sqlite3_close(db_); }
    Database(const Database&) = delete;
    Database& operator=(const Database&) = delete;

    asio::thread_pool& thread() { return thread_; }
    std::recursive_mutex& mutex() { return mutex_; }

    /// Runs `work` (which writes) on the journal thread and returns once it is committed.
    /// Writes that queue up while a commit is under way share the next one: one fsync for
    /// all of them, so a webhook's insert never waits behind a line of separate commits.
    template <typename Work>
    auto write(Work work) -> asio::awaitable<decltype(work())> {
        using Result = decltype(work());
        auto pending = std::make_shared<PendingWrite>();
        auto result = std::make_shared<std::conditional_t<std::is_void_v<Result>, bool,
                                                          std::optional<Result>>>();
        pending->apply = [work = std::move(work), result]() mutable {
            if constexpr (std::is_void_v<Result>) {
                work();
            } else {
                *result = work();
            }
        };
        {
            const std::lock_guard lock(queue_mutex_);
            queue_.push_back(pending);
        }
        auto commit = [this]() -> asio::awaitable<void> {
            commit_queued();
            co_return;
        };
        auto committed = asio::co_spawn(thread_, std::move(commit), asio::use_awaitable);
        co_await std::move(committed);
        if (pending->error) std::rethrow_exception(pending->error);
        if constexpr (!std::is_void_v<Result>) co_return std::move(**result);
    }
    sqlite3* db() { return db_; }

    /// Runs `sql` (several statements allowed); throws JournalError saying `what` on failure.
    void execute(std::string_view sql, std::string_view what) {
        char* message = nullptr;
        const std::string text(sql);
        if (sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
            const std::string reason = message != nullptr ? message : sqlite3_errmsg(db_);
            sqlite3_free(message);
            fail(what, reason);
        }
    }

    /// The first column of the first row of `sql`, as text.
    std::string query_text(std::string_view sql, std::string_view what) {
        Statement statement(*this, sql, what);
        if (!statement.step()) return {};
        return statement.text(0);
    }

    [[noreturn]] void fail(std::string_view what, std::string_view reason) const {
        // Whatever was being done, a lock held elsewhere is the story to tell.
        if (db_ != nullptr && (sqlite3_errcode(db_) & 0xff) == SQLITE_BUSY) {
            throw JournalError(fmt::format(
                "the journal {} is in use by another process (one service per journal file): {}",
                path_.string(), reason));
        }
        throw JournalError(fmt::format("the journal {} {}: {}", path_.string(), what, reason));
    }

    /// A prepared statement, finalised when it goes out of scope.
    class Statement final {
    public:
        Statement(Database& database, std::string_view sql, std::string_view what)
            : database_(database), what_(what) {
            if (sqlite3_prepare_v2(database.db_, sql.data(), static_cast<int>(sql.size()),
                                   &statement_, nullptr) != SQLITE_OK) {
                database.fail(what, sqlite3_errmsg(database.db_));
            }
        }
        ~Statement() { sqlite3_finalize(statement_); }
        Statement(const Statement&) = delete;
        Statement& operator=(const Statement&) = delete;

        Statement& bind(int index, std::string_view text) {
            check(sqlite3_bind_text(statement_, index, text.data(), static_cast<int>(text.size()),
                                    SQLITE_TRANSIENT));
            return *this;
        }
        Statement& bind(int index, std::int64_t number) {
            check(sqlite3_bind_int64(statement_, index, number));
            return *this;
        }
        /// True while there is a row; false when done.
        bool step() {
            const int result = sqlite3_step(statement_);
            if (result == SQLITE_ROW) return true;
            if (result == SQLITE_DONE) return false;
            database_.fail(what_, sqlite3_errmsg(database_.db_));
        }
        std::string text(int column) {
            const auto* data = sqlite3_column_text(statement_, column);
            if (data == nullptr) return {};
            return {reinterpret_cast<const char*>(data),
                    static_cast<std::size_t>(sqlite3_column_bytes(statement_, column))};
        }
        std::int64_t number(int column) { return sqlite3_column_int64(statement_, column); }
        bool is_null(int column) { return sqlite3_column_type(statement_, column) == SQLITE_NULL; }

    private:
        void check(int result) {
            if (result != SQLITE_OK) database_.fail(what_, sqlite3_errmsg(database_.db_));
        }
        Database& database_;
        sqlite3_stmt* statement_ = nullptr;
        std::string_view what_;
    };

private:
    struct PendingWrite {
        std::function<void()> apply;
        std::exception_ptr error;
    };

    /// On the journal thread: commits every queued write in one transaction. A write whose
    /// turn comes after an earlier commit took it finds nothing left to do.
    void commit_queued() {
        std::vector<std::shared_ptr<PendingWrite>> batch;
        {
            const std::lock_guard lock(queue_mutex_);
            batch.swap(queue_);
        }
        if (batch.empty()) return;
        const std::lock_guard lock(mutex_);
        try {
            execute("BEGIN IMMEDIATE", "could not start a transaction");
            for (auto& pending : batch) {
                // One failing write (a bad row) must not take the others down with it.
                execute("SAVEPOINT one_write", "could not start a write");
                try {
                    pending->apply();
                    execute("RELEASE one_write", "could not finish a write");
                } catch (...) {
                    pending->error = std::current_exception();
                    sqlite3_exec(db_, "ROLLBACK TO one_write; RELEASE one_write;", nullptr,
                                 nullptr, nullptr);
                }
            }
            execute("COMMIT", "could not commit");
        } catch (...) {
            sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
            for (auto& pending : batch) {
                if (!pending->error) pending->error = std::current_exception();
            }
        }
    }

    void migrate() {
        const auto found = std::stoi(query_text("PRAGMA user_version", "cannot be read"));
        if (found > kSchemaVersion) {
            fail("was written by a newer version of image-edit-agent",
                 fmt::format("schema version {}, this build knows up to {}", found,
                             kSchemaVersion));
        }
        if (found == 0 &&
            query_text("SELECT count(*) FROM sqlite_master", "cannot be read") != "0") {
            fail("is not a journal", "it is a SQLite file with other tables in it");
        }
        for (int version = found + 1; version <= kSchemaVersion; ++version) {
            const auto& steps = kMigrations[version - 1];
            execute(fmt::format("BEGIN IMMEDIATE; {} PRAGMA user_version={}; COMMIT;", steps,
                                version),
                    fmt::format("could not be migrated to schema version {}", version));
        }
    }

    std::filesystem::path path_;
    sqlite3* db_ = nullptr;
    std::recursive_mutex mutex_;  // the batch holds it while each write takes it again
    std::mutex queue_mutex_;
    std::vector<std::shared_ptr<PendingWrite>> queue_;
    asio::thread_pool thread_{1};
};

namespace {

/// Runs `work` on the journal's thread and resumes the caller on its own executor.
template <typename Work>
auto on_journal_thread(asio::thread_pool& thread, Work work)
    -> asio::awaitable<decltype(work())> {
    using Result = decltype(work());
    auto hop = [work = std::move(work)]() mutable -> asio::awaitable<Result> { co_return work(); };
    auto running = asio::co_spawn(thread, std::move(hop), asio::use_awaitable);
    co_return co_await std::move(running);
}

}  // namespace

nlohmann::json history_body(const std::string& task_id, const std::vector<HistoryRun>& runs) {
    auto out = nlohmann::json::array();
    for (const auto& run : runs) {
        nlohmann::json entry = {{"run_id", run.id},
                                {"delivery_id", run.delivery_id},
                                {"received_at", iso_time(run.received_at_ms)},
                                {"state", run.state},
                                {"resumes", run.resumes}};
        entry["ended_at"] =
            run.ended_at_ms ? nlohmann::json(iso_time(*run.ended_at_ms)) : nlohmann::json();
        if (!run.instance.empty()) entry["instance"] = run.instance;
        auto steps = nlohmann::json::array();
        entry["attempts"] = nlohmann::json::array();
        for (const auto& step : run.steps) {
            // The attempts summary is the part people read: lifted out of the step list.
            if (step.key == "attempts") {
                entry["attempts"] = step.value;
                continue;
            }
            steps.push_back({{"step", step.key}, {"at", iso_time(step.at_ms)}, {"value", step.value}});
        }
        entry["steps"] = std::move(steps);
        out.push_back(std::move(entry));
    }
    return {{"task_id", task_id}, {"runs", std::move(out)}};
}

std::unique_ptr<SqliteJournal> SqliteJournal::open(const std::filesystem::path& path) {
    if (path.empty()) throw JournalError("the journal path is empty: set JOURNAL_PATH to a file");
    std::error_code error;
    if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), error);
    if (error) {
        throw JournalError(fmt::format("the journal {} cannot be created: folder {}: {}",
                                       path.string(), path.parent_path().string(),
                                       error.message()));
    }
    return std::unique_ptr<SqliteJournal>(new SqliteJournal(path, std::make_unique<Database>(path)));
}

SqliteJournal::SqliteJournal(std::filesystem::path path, std::unique_ptr<Database> database)
    : path_(std::move(path)), database_(std::move(database)) {}

SqliteJournal::~SqliteJournal() {
    // Calls still queued on the journal thread finish before the connection closes.
    database_->thread().join();
}

std::optional<JobId> SqliteJournal::record_job_now(const std::string& task_id,
                                             const std::string& delivery_id,
                                             SystemClock::time_point received_at) {
    const std::lock_guard lock(database_->mutex());
    Database::Statement insert(
        *database_,
        "INSERT INTO jobs(task_id, delivery_id, received_at_ms) VALUES(?, ?, ?) "
        "ON CONFLICT(delivery_id) DO NOTHING",
        "could not record a job");
    insert.bind(1, task_id).bind(2, delivery_id).bind(3, to_ms(received_at));
    (void)insert.step();
    if (sqlite3_changes(database_->db()) == 0) return std::nullopt;
    return sqlite3_last_insert_rowid(database_->db());
}

void SqliteJournal::record_checkpoint_now(JobId job, const std::string& key,
                                    const nlohmann::json& value) {
    const std::lock_guard lock(database_->mutex());
    Database::Statement upsert(
        *database_,
        "INSERT OR REPLACE INTO checkpoints(job_id, key, value, written_at_ms) "
        "VALUES(?, ?, ?, ?)",
        "could not record a checkpoint");
    upsert.bind(1, job).bind(2, key).bind(3, value.dump()).bind(4, to_ms(SystemClock::now()));
    (void)upsert.step();
}

void SqliteJournal::record_ending_now(JobId job, const std::string& state) {
    const std::lock_guard lock(database_->mutex());
    Database::Statement update(*database_,
                               "UPDATE jobs SET state = ?, ended_at_ms = ? WHERE id = ?",
                               "could not record a job's ending");
    update.bind(1, state).bind(2, to_ms(SystemClock::now())).bind(3, job);
    (void)update.step();
}

asio::awaitable<std::optional<JobId>> SqliteJournal::record_job(std::string task_id,
                                                          std::string delivery_id,
                                                          SystemClock::time_point received_at) {
    // Named before the co_await: GCC 12 destroys temporaries inside a co_await twice.
    auto write = [this, task_id = std::move(task_id), delivery_id = std::move(delivery_id),
                  received_at] { return record_job_now(task_id, delivery_id, received_at); };
    co_return co_await database_->write(std::move(write));
}

asio::awaitable<void> SqliteJournal::record_checkpoint(JobId job, std::string key,
                                                 nlohmann::json value) {
    auto write = [this, job, key = std::move(key), value = std::move(value)] {
        record_checkpoint_now(job, key, value);
    };
    co_await database_->write(std::move(write));
}

asio::awaitable<void> SqliteJournal::record_ending(JobId job, std::string state) {
    auto write = [this, job, state = std::move(state)] { record_ending_now(job, state); };
    co_await database_->write(std::move(write));
}

// TODO: finished jobs and their checkpoints are kept forever; the journal needs a retention period (and a VACUUM) so the file does not grow without bound.
std::vector<JobRecord> SqliteJournal::take_unfinished_jobs() {
    const std::lock_guard lock(database_->mutex());
    // A resume after which the job recorded nothing new, though it had a while to, is a
    // stalled one: a job that keeps bringing the service down stalls; a job that was merely
    // interrupted, or restarted again before it could catch up, does not.
    const auto now = to_ms(SystemClock::now());
    database_->execute(fmt::format(R"(
        BEGIN IMMEDIATE;
        UPDATE jobs SET
            resumes = resumes + 1,
            stalled_resumes = CASE
                WHEN (SELECT count(*) FROM checkpoints WHERE job_id = jobs.id) > checkpoints_seen
                    THEN 0
                WHEN {now} - resumed_at_ms < {catch_up} THEN stalled_resumes
                ELSE stalled_resumes + 1 END,
            checkpoints_seen = (SELECT count(*) FROM checkpoints WHERE job_id = jobs.id),
            resumed_at_ms = {now}
        WHERE state = 'running';)",
                                   fmt::arg("now", now),
                                   fmt::arg("catch_up", kCatchUpTime.count())),
                       "could not list unfinished jobs");
    std::vector<JobRecord> jobs;
    try {
        Database::Statement select(
            *database_,
            "SELECT id, task_id, delivery_id, received_at_ms, state, resumes, stalled_resumes "
            "FROM jobs WHERE state = 'running' ORDER BY id",
            "could not list unfinished jobs");
        while (select.step()) {
            JobRecord job;
            job.id = select.number(0);
            job.task_id = select.text(1);
            job.delivery_id = select.text(2);
            job.received_at = from_ms(select.number(3));
            job.state = select.text(4);
            job.resumes = static_cast<int>(select.number(5));
            job.stalled_resumes = static_cast<int>(select.number(6));
            jobs.push_back(std::move(job));
        }
        for (auto& job : jobs) {
            Database::Statement checkpoints(
                *database_, "SELECT key, value FROM checkpoints WHERE job_id = ? ORDER BY rowid",
                "could not read checkpoints");
            checkpoints.bind(1, job.id);
            while (checkpoints.step()) {
                auto value = nlohmann::json::parse(checkpoints.text(1), nullptr, false);
                if (value.is_discarded()) {
                    job.damaged = "checkpoint '" + checkpoints.text(0) + "' is not valid JSON";
                    break;
                }
                job.checkpoints.emplace_back(checkpoints.text(0), std::move(value));
            }
        }
        database_->execute("COMMIT;", "could not list unfinished jobs");
    } catch (...) {
        sqlite3_exec(database_->db(), "ROLLBACK;", nullptr, nullptr, nullptr);
        throw;
    }
    return jobs;
}

nlohmann::json SqliteJournal::task_history_now(const std::string& task_id) {
    const std::lock_guard lock(database_->mutex());
    std::vector<HistoryRun> runs;
    Database::Statement select(
        *database_,
        "SELECT id, delivery_id, received_at_ms, state, ended_at_ms, resumes FROM jobs "
        "WHERE task_id = ? ORDER BY id DESC LIMIT ?",
        "could not read the history");
    select.bind(1, task_id).bind(2, static_cast<std::int64_t>(kHistoryRuns));
    while (select.step()) {
        HistoryRun run;
        run.id = select.number(0);
        run.delivery_id = select.text(1);
        run.received_at_ms = select.number(2);
        run.state = select.text(3);
        if (!select.is_null(4)) run.ended_at_ms = select.number(4);
        run.resumes = static_cast<int>(select.number(5));
        runs.push_back(std::move(run));
    }
    for (auto& run : runs) {
        Database::Statement checkpoints(
            *database_,
            "SELECT key, value, written_at_ms FROM checkpoints WHERE job_id = ? ORDER BY rowid",
            "could not read the history");
        checkpoints.bind(1, run.id);
        while (checkpoints.step()) {
            auto value = nlohmann::json::parse(checkpoints.text(1), nullptr, false);
            if (value.is_discarded()) value = "(not valid JSON)";
            run.steps.push_back({checkpoints.text(0), std::move(value), checkpoints.number(2)});
        }
    }
    return history_body(task_id, runs);
}

asio::awaitable<nlohmann::json> SqliteJournal::task_history(std::string task_id) {
    auto read = [this, task_id = std::move(task_id)] { return task_history_now(task_id); };
    co_return co_await on_journal_thread(database_->thread(), std::move(read));
}

std::optional<std::string> SqliteJournal::problem() const {
    // The exclusive lock is held and the file was checked at open; what can still go wrong
    // is the disk: a full or vanished folder.
    std::error_code error;
    if (!std::filesystem::exists(path_, error)) {
        return fmt::format("the journal {} has disappeared", path_.string());
    }
    const auto space = std::filesystem::space(path_.parent_path().empty() ? "." : path_.parent_path(),
                                              error);
    if (!error && space.available < (1U << 20U)) {
        return fmt::format("the disk holding the journal {} is full", path_.string());
    }
    return std::nullopt;
}

}  // namespace iea::journal
