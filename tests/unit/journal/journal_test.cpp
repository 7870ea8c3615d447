#include <sqlite3.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>

#include "iea/journal/journal.hpp"
#include "support/harness.hpp"

using iea::journal::SqliteJournal;
using iea::journal::JournalError;
using iea::journal::SystemClock;
using iea::testing::scratch_dir;

namespace {

std::filesystem::path fresh_journal_path(const std::string& name) {
    return scratch_dir("journal-" + name) / "journal.sqlite3";
}

/// Runs a coroutine to its end on a private event loop.
template <typename T>
T run(boost::asio::awaitable<T> work) {
    boost::asio::io_context io;
    auto result = boost::asio::co_spawn(io, std::move(work), boost::asio::use_future);
    io.run();
    return result.get();
}

void run_sql(const std::filesystem::path& path, const std::string& sql) {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    char* message = nullptr;
    const int result = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message);
    const std::string error = message != nullptr ? message : "";
    sqlite3_free(message);
    sqlite3_close(db);
    REQUIRE(error.empty());
    REQUIRE(result == SQLITE_OK);
}

}  // namespace

TEST_CASE("A job is recorded once per delivery, even across reopening") {
    const auto path = fresh_journal_path("once");
    {
        auto journal = SqliteJournal::open(path);
        const auto first = run(journal->record_job("task-1", "wh:1", SystemClock::now()));
        REQUIRE(first.has_value());
        CHECK_FALSE(run(journal->record_job("task-1", "wh:1", SystemClock::now())).has_value());
        const auto second = run(journal->record_job("task-1", "wh:2", SystemClock::now()));
        REQUIRE(second.has_value());
        CHECK(*second != *first);
    }
    auto reopened = SqliteJournal::open(path);
    CHECK_FALSE(reopened->record_job_now("task-1", "wh:1", SystemClock::now()).has_value());
}

TEST_CASE("Unfinished jobs come back with their checkpoints, in the order written") {
    const auto path = fresh_journal_path("resume");
    {
        auto journal = SqliteJournal::open(path);
        const auto finished = *journal->record_job_now("task-a", "wh:a", SystemClock::now());
        const auto open = *journal->record_job_now("task-b", "wh:b", SystemClock::now());
        run(journal->record_checkpoint(open, "task", {{"request", "make it blue"}}));
        run(journal->record_checkpoint(open, "prompt/1/m", {{"prompt", "first"}}));
        run(journal->record_checkpoint(open, "image", {{"source_url", "http://127.0.0.1/x"}}));
        // A rewrite of a key replaces it and moves it to the end.
        run(journal->record_checkpoint(open, "prompt/1/m", {{"prompt", "second"}}));
        run(journal->record_ending(finished, "complete"));
    }
    auto journal = SqliteJournal::open(path);
    auto jobs = journal->take_unfinished_jobs();
    REQUIRE(jobs.size() == 1);
    const auto& job = jobs.front();
    CHECK(job.task_id == "task-b");
    CHECK(job.delivery_id == "wh:b");
    CHECK(job.resumes == 1);
    REQUIRE(job.checkpoints.size() == 3);
    CHECK(job.checkpoints[0].first == "task");
    CHECK(job.checkpoints[1].first == "image");
    CHECK(job.checkpoints[2].first == "prompt/1/m");
    CHECK(job.checkpoints[2].second.at("prompt") == "second");

    // Each take counts one more resume. A restart that comes before the job had time to
    // catch up does not count against it.
    auto again = journal->take_unfinished_jobs();
    CHECK(again.front().resumes == 2);
    CHECK(again.front().stalled_resumes == 0);
}

TEST_CASE("A job that had time to catch up and recorded nothing is a stalled one") {
    const auto path = fresh_journal_path("stalled");
    auto journal = SqliteJournal::open(path);
    const auto id = *journal->record_job_now("task-s", "wh:s", SystemClock::now());
    journal->record_checkpoint_now(id, "task", {{"request", "r"}});
    CHECK(journal->take_unfinished_jobs().front().stalled_resumes == 0);
    // As if the last resume was long ago and nothing came of it.
    journal.reset();
    run_sql(path, "UPDATE jobs SET resumed_at_ms = 0;");
    journal = SqliteJournal::open(path);
    auto stalled = journal->take_unfinished_jobs();
    CHECK(stalled.front().stalled_resumes == 1);
    // A new step resets it.
    journal->record_checkpoint_now(id, "image", {{"source_url", "http://127.0.0.1/x"}});
    journal.reset();
    run_sql(path, "UPDATE jobs SET resumed_at_ms = 0;");
    journal = SqliteJournal::open(path);
    CHECK(journal->take_unfinished_jobs().front().stalled_resumes == 0);
}

TEST_CASE("A task's history lists its runs newest first, with attempts lifted out") {
    auto journal = SqliteJournal::open(fresh_journal_path("history"));
    const auto older = *journal->record_job_now("task-h", "wh:1", SystemClock::now());
    journal->record_ending_now(older, "blocked");
    const auto newer = *journal->record_job_now("task-h", "wh:2", SystemClock::now());
    journal->record_checkpoint_now(newer, "prompt/1/m", {{"prompt", "p"}});
    journal->record_checkpoint_now(
        newer, "attempts",
        nlohmann::json::array({{{"iteration", 1}, {"model", "m"}, {"score", 9.0}}}));
    (void)journal->record_job_now("other-task", "wh:3", SystemClock::now());

    const auto history = run(journal->task_history("task-h"));
    CHECK(history.at("task_id") == "task-h");
    const auto& runs = history.at("runs");
    REQUIRE(runs.size() == 2);
    CHECK(runs[0].at("run_id") == newer);
    CHECK(runs[0].at("state") == "running");
    CHECK(runs[0].at("ended_at").is_null());
    CHECK(runs[0].at("attempts").size() == 1);
    CHECK(runs[0].at("attempts")[0].at("score") == 9.0);
    REQUIRE(runs[0].at("steps").size() == 1);
    CHECK(runs[0].at("steps")[0].at("step") == "prompt/1/m");
    CHECK(runs[1].at("state") == "blocked");
    CHECK(runs[1].at("ended_at").is_string());

    CHECK(journal->task_history_now("no-such-task").at("runs").empty());
}

TEST_CASE("A journal of the first schema is migrated, keeping its jobs") {
    const auto path = fresh_journal_path("migrate");
    // Schema version 1, as the first release wrote it: no resume counter, no indexes.
    run_sql(path, R"(
        CREATE TABLE jobs(id INTEGER PRIMARY KEY, task_id TEXT NOT NULL,
                          delivery_id TEXT NOT NULL UNIQUE, received_at_ms INTEGER NOT NULL,
                          state TEXT NOT NULL DEFAULT 'running', ended_at_ms INTEGER);
        CREATE TABLE checkpoints(job_id INTEGER NOT NULL REFERENCES jobs(id), key TEXT NOT NULL,
                                 value TEXT NOT NULL, written_at_ms INTEGER NOT NULL,
                                 PRIMARY KEY(job_id, key));
        INSERT INTO jobs(task_id, delivery_id, received_at_ms) VALUES('task-old', 'wh:old', 1);
        INSERT INTO checkpoints VALUES(1, 'task', '{"request":"old"}', 2);
        PRAGMA user_version = 1;)");

    auto journal = SqliteJournal::open(path);
    auto jobs = journal->take_unfinished_jobs();
    REQUIRE(jobs.size() == 1);
    CHECK(jobs[0].task_id == "task-old");
    CHECK(jobs[0].resumes == 1);
    REQUIRE(jobs[0].checkpoints.size() == 1);
    CHECK(jobs[0].checkpoints[0].second.at("request") == "old");
    CHECK_FALSE(journal->record_job_now("task-old", "wh:old", SystemClock::now()).has_value());
}

TEST_CASE("A journal that cannot be trusted stops the start with the reason") {
    SECTION("a damaged file") {
        const auto path = fresh_journal_path("damaged");
        std::ofstream(path) << std::string(8192, 'x');
        CHECK_THROWS_WITH(SqliteJournal::open(path), Catch::Contains("is not a journal") &&
                                                   Catch::Contains(path.string()));
    }
    SECTION("somebody else's SQLite file") {
        const auto path = fresh_journal_path("foreign");
        run_sql(path, "CREATE TABLE invoices(id INTEGER);");
        CHECK_THROWS_WITH(SqliteJournal::open(path), Catch::Contains("other tables"));
    }
    SECTION("a file from a newer version") {
        const auto path = fresh_journal_path("newer");
        (void)SqliteJournal::open(path);
        run_sql(path, "PRAGMA user_version = 99;");
        CHECK_THROWS_WITH(SqliteJournal::open(path), Catch::Contains("newer version"));
    }
    SECTION("a folder that cannot be made") {
        const auto blocker = scratch_dir("journal-blocker") / "a-file";
        std::ofstream(blocker) << "not a folder";
        CHECK_THROWS_WITH(SqliteJournal::open(blocker / "journal.sqlite3"),
                          Catch::Contains("cannot be created"));
    }
    SECTION("a journal with the right version but a table missing its columns") {
        const auto path = fresh_journal_path("columns");
        (void)SqliteJournal::open(path);
        run_sql(path, "DROP TABLE checkpoints; CREATE TABLE checkpoints(x);");
        CHECK_THROWS_WITH(SqliteJournal::open(path), Catch::Contains("expected tables"));
    }
    SECTION("no path at all") {
        CHECK_THROWS_WITH(SqliteJournal::open(""), Catch::Contains("JOURNAL_PATH"));
    }
    SECTION("a journal another process holds") {
        const auto path = fresh_journal_path("held");
        const auto first = SqliteJournal::open(path);
        CHECK_THROWS_WITH(SqliteJournal::open(path), Catch::Contains("in use"));
    }
}

TEST_CASE("A read-only journal is refused") {
    const auto path = fresh_journal_path("read-only");
    (void)SqliteJournal::open(path);
    // root ignores file modes: the file is made immutable instead, where the disk allows it.
    const bool as_root = ::geteuid() == 0;
    const auto command = (as_root ? "chattr +i '" : "chmod a-w '") + path.string() + "'";
    if (std::system(command.c_str()) != 0) {
        WARN("skipped: could not make " << path << " read-only here");
        return;
    }
    std::string refusal;
    try {
        (void)SqliteJournal::open(path);
    } catch (const JournalError& error) {
        refusal = error.what();
    }
    const auto undo = (as_root ? "chattr -i '" : "chmod u+w '") + path.string() + "'";
    REQUIRE(std::system(undo.c_str()) == 0);
    CHECK_THAT(refusal, Catch::Contains("not writable") || Catch::Contains("in use or not writable"));
}

TEST_CASE("One damaged record is reported, and does not hide the other unfinished jobs") {
    const auto path = fresh_journal_path("damaged-row");
    {
        auto journal = SqliteJournal::open(path);
        const auto good = *journal->record_job_now("task-good", "wh:g", SystemClock::now());
        journal->record_checkpoint_now(good, "task", {{"request", "r"}});
        (void)journal->record_job_now("task-bad", "wh:b", SystemClock::now());
    }
    run_sql(path, "INSERT INTO checkpoints VALUES(2, 'task', '{not json', 0);");
    auto journal = SqliteJournal::open(path);
    const auto jobs = journal->take_unfinished_jobs();
    REQUIRE(jobs.size() == 2);
    CHECK(jobs[0].damaged.empty());
    CHECK_THAT(jobs[1].damaged, Catch::Contains("'task'"));
    CHECK(journal->task_history_now("task-bad").at("runs").size() == 1);
}

