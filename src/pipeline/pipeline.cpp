#include "iea/pipeline/pipeline.hpp"

#include <algorithm>
#include <map>
#include <optional>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>

#include "iea/image/format.hpp"
#include "iea/logging/log.hpp"
#include "iea/metrics/metrics.hpp"
#include "iea/pipeline/report.hpp"
#include "iea/pipeline/verdict.hpp"
#include "iea/providers/errors.hpp"

namespace iea::pipeline {
namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

/// A run stopped at a checkpoint because the service is shutting down; the journal keeps it
/// for the next start. Not a std::exception, so no handler of failures swallows it.
struct Interrupted {};

/// True for the ways a run is cut off from outside (shutdown, deadline): they must pass
/// through the handlers that turn a failing call into a message.
bool is_cut_off(const boost::system::system_error& error) {
    return error.code() == boost::asio::error::operation_aborted;
}

/// A task that cannot be processed, with the reason in a designer's words, and whether the
/// designer can fix it (the task) or not (the service or a provider is failing).
class Blocked final : public std::runtime_error {
public:
    explicit Blocked(const std::string& reason, Fault fault = Fault::kTask)
        : std::runtime_error(reason), fault_(fault) {}
    [[nodiscard]] Fault fault() const { return fault_; }

private:
    Fault fault_;
};

std::string trim(std::string_view text) {
    const auto first = text.find_first_not_of(" \t\r\n");
    if (first == std::string_view::npos) return {};
    const auto last = text.find_last_not_of(" \t\r\n");
    return std::string(text.substr(first, last - first + 1));
}

std::string lower(std::string text) {
    for (auto& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return text;
}

bool looks_like_image(const providers::Attachment& attachment) {
    static const std::vector<std::string> kNotImages = {
        "txt", "doc", "docx", "xls", "xlsx", "csv", "zip", "rar", "7z", "mp4", "mov",
        "avi", "mp3", "wav", "ppt", "pptx", "json", "html", "md", "ai", "indd", "sketch"};
    const auto mime = lower(attachment.mimetype);
    if (mime.starts_with("image/") || mime == "application/pdf") return true;
    const auto extension = lower(attachment.extension);
    // An unknown or missing type is tried: the content decides, not the name.
    return std::find(kNotImages.begin(), kNotImages.end(), extension) == kNotImages.end();
}

std::string provider_name(const std::string& provider) {
    if (provider == "clickup") return "ClickUp";
    if (provider == "openrouter") return "the review and prompt service (OpenRouter)";
    if (provider == "wavespeed") return "the image-edit service (WaveSpeed)";
    return provider;
}

/// Words for a failure of one model's attempt.
std::string failure_words(const std::exception& error) {
    if (const auto* provider = dynamic_cast<const providers::ProviderError*>(&error)) {
        return fmt::format("{} failed: {}", provider_name(provider->provider()),
                           provider->provider_message().empty()
                               ? std::string(providers::to_string(provider->kind()))
                               : provider->provider_message());
    }
    return error.what();
}

/// The model's answer as a prompt: no surrounding quotes or code fence.
std::string clean_prompt(std::string text) {
    text = trim(text);
    if (text.starts_with("```")) {
        const auto first_line = text.find('\n');
        const auto fence_end = text.rfind("```");
        if (first_line != std::string::npos && fence_end > first_line) {
            text = trim(text.substr(first_line + 1, fence_end - first_line - 1));
        }
    }
    if (text.size() >= 2 && text.front() == '"' && text.back() == '"') {
        text = trim(text.substr(1, text.size() - 2));
    }
    return text;
}

}  // namespace

std::vector<providers::Attachment> input_candidates(
    const std::vector<providers::Attachment>& attachments) {
    std::vector<providers::Attachment> out;
    for (const auto& attachment : attachments) {
        if (attachment.title.starts_with(kResultPrefix) ||
            attachment.title.starts_with(kSourcePrefix)) {
            continue;
        }
        if (!looks_like_image(attachment)) continue;
        out.push_back(attachment);
    }
    // Newest first; ClickUp's array order is not documented, so equal dates keep the later
    // element first.
    std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
        return a.date_ms > b.date_ms;
    });
    return out;
}

/// The state and steps of one task's run.
class TaskRun final {
public:
    TaskRun(Pipeline& pipeline,
            service::TaskJob job,
            locking::TaskLocks::Guard* lock,
            const std::vector<std::pair<std::string, nlohmann::json>>& recorded,
            int resumes,
            int stalled_resumes)
        : pipeline_(pipeline),
          lock_(lock),
          deps_(pipeline.deps_),
          settings_(pipeline.deps_.settings),
          job_(std::move(job)),
          log_(logging::Logger("pipeline").with({{"task_id", job_.task_id},
                                                 {"run_id", job_.run_id}})),
          resumes_(resumes),
          stalled_resumes_(stalled_resumes) {
        for (const auto& [key, value] : recorded) recorded_[key] = value;
    }

    /// From now on the run stops at its next checkpoint once `given_up` turns true.
    void stop_when(std::shared_ptr<const bool> given_up) { given_up_ = std::move(given_up); }

    void log_interruption() const {
        if (given_up_ && *given_up_) {
            log_.info("Task left to the instance that holds its lock now");
        } else {
            // One instance resumes it at its next start; several hand it to another at once.
            log_.info("Task interrupted by shutdown; it resumes from its last checkpoint");
        }
    }

    asio::awaitable<Ending> run();

private:
    /// An edited image made by one model in one iteration.
    struct Candidate {
        Attempt attempt;
        std::string bytes;
        std::string output_url;
    };

    /// How the steps ended; a non-empty reason means the task is blocked.
    struct Outcome {
        Ending ending;
        std::string blocked_reason;
        Fault fault = Fault::kService;
    };

    asio::awaitable<Outcome> race_the_deadline();
    asio::awaitable<Outcome> guarded_steps();
    asio::awaitable<Ending> steps();
    asio::awaitable<bool> check_task();
    asio::awaitable<void> prepare_image();
    /// What one enhance-generate-validate round works on: the whole request on the source
    /// image, or in step-by-step mode one edit on the previous step's result.
    struct Round {
        int iteration;
        std::string request;
        std::string input_url;
        const image::EncodedImage* input_for_review;
        std::string step;  // the single edit, in step-by-step mode
        std::map<std::string, Feedback>* feedback;
    };

    asio::awaitable<std::vector<Candidate>> run_round(const Round& round);
    asio::awaitable<Candidate> enhance_and_generate(const config::ImageModel& model,
                                                    const Round& round);
    asio::awaitable<std::string> enhance(const config::ImageModel& model, const Round& round);
    asio::awaitable<Candidate> generate(const config::ImageModel& model,
                                        std::string prompt,
                                        const Round& round);
    asio::awaitable<void> validate(Candidate& candidate, const Round& round);
    asio::awaitable<std::optional<Candidate>> step_by_step();
    asio::awaitable<std::vector<std::string>> split_request();

    // Endings: a decision is recorded first, then carried out, so a restart in the middle of
    // the last writes finishes the same ending instead of deciding again.
    asio::awaitable<Ending> finish_completed(const Candidate& winner, int iteration);
    asio::awaitable<Ending> finish_review(int iterations_used);
    asio::awaitable<void> finish_blocked(const std::string& reason, Fault fault);
    asio::awaitable<Ending> carry_out(nlohmann::json decision, const std::string* result_bytes);
    /// One ClickUp write whose failure must not stop the writes after it: logged, not thrown.
    asio::awaitable<bool> write_to_task(std::string_view operation,
                                        asio::awaitable<nlohmann::json> write);
    asio::awaitable<std::string> upload_result(const nlohmann::json& upload,
                                               const std::string* bytes);
    /// The last writes of every ending: untick the box, set the status, comment.
    asio::awaitable<void> end_task(std::string status, std::string comment);
    [[nodiscard]] std::string result_file_name(const Attempt& attempt, bool best_attempt,
                                               const std::string& bytes) const;

    // The journal.
    /// The recorded outcome of step `key`, to reuse; null when the step must run now. During a
    /// shutdown, a step that must run now is not started: the run stops here (Interrupted).
    const nlohmann::json* reuse(const std::string& key);
    asio::awaitable<void> record(std::string key, nlohmann::json value);
    /// A write to the task whose outcome a crash can leave unknown: marked before it is asked
    /// for and recorded after; on a resume, an unknown outcome is looked for on the task
    /// (`look` gives null when it is not there) and the write is repeated only when missing.
    template <typename Write, typename Look>
    asio::awaitable<nlohmann::json> write_once(std::string key, Write write, Look look);
    asio::awaitable<nlohmann::json> find_attachment(const std::string& file_name);
    [[nodiscard]] nlohmann::json attempts_summary() const;

    Pipeline& pipeline_;
    locking::TaskLocks::Guard* lock_;  // null for a replay without a lock
    const Dependencies& deps_;
    const config::Settings& settings_;
    service::TaskJob job_;
    logging::Logger log_;
    int resumes_ = 0;
    int stalled_resumes_ = 0;
    std::shared_ptr<const bool> given_up_;  // set when the job went to another instance
    std::map<std::string, nlohmann::json> recorded_;  // checkpoints by key
    bool ending_unwritten_ = false;  // a last write to the task failed

    providers::Task task_;
    std::string request_;
    image::PreparedImage source_;
    std::string source_url_;
    image::EncodedImage source_for_review_;
    std::map<std::string, Feedback> feedback_;  // by model, from the last validation
    std::vector<Attempt> attempts_;
    std::vector<Candidate> reviewed_;  // every candidate that got a verdict
    std::vector<std::string> dropped_models_;
    int rounds_ = 0;  // rounds run so far: iterations, then steps
};

asio::awaitable<Ending> TaskRun::run() {
    log_.info(resumes_ == 0 ? "Task started" : "Task resumed",
              {{"delivery_id", job_.delivery_id}, {"resumes", resumes_}});

    auto outcome = co_await race_the_deadline();
    if (outcome.ending == Ending::kInterrupted) {
        log_interruption();
        co_return Ending::kInterrupted;
    }
    if (!outcome.blocked_reason.empty()) {
        try {
            co_await finish_blocked(outcome.blocked_reason, outcome.fault);
        } catch (const Interrupted&) {
            log_interruption();
            co_return Ending::kInterrupted;
        }
        outcome.ending = Ending::kBlocked;
    }

    // A task ClickUp would not let us finish (a revoked key, an outage) keeps its job in the
    // journal: the next start carries out the same ending, doing only the writes still missing.
    if (ending_unwritten_) {
        log_.error("Task ending not fully written; it is retried at the next start",
                   {{"ending", to_string(outcome.ending)}});
        co_return outcome.ending;
    }

    // The job leaves the journal's list of work to resume.
    try {
        co_await deps_.journal.record_ending(job_.run_id, std::string(to_string(outcome.ending)));
    } catch (const std::exception& error) {
        // Every write is recorded as done: a resume would only find nothing left to do.
        log_.error("Task ending could not be recorded", {{"error", error.what()}});
    }
    co_return outcome.ending;
}

asio::awaitable<TaskRun::Outcome> TaskRun::race_the_deadline() {
    using namespace asio::experimental::awaitable_operators;
    if (stalled_resumes_ > kMaxStalledResumes && !recorded_.contains("decision")) {
        co_return Outcome{Ending::kBlocked,
                          fmt::format("the edit service restarted {} times in a row while working "
                                      "on this edit without getting any further, so it was "
                                      "stopped.",
                                      stalled_resumes_)};
    }

    // The deadline races the steps. `||` waits for the first branch that succeeds, so the
    // steps report failures as values: a thrown reason would be held until the deadline.
    asio::steady_timer deadline(co_await asio::this_coro::executor, settings_.task_deadline);
    auto finished = co_await (guarded_steps() || deadline.async_wait(asio::use_awaitable) ||
                              pipeline_.stop_signal_.async_wait(asio::as_tuple(asio::use_awaitable)));
    if (finished.index() == 0) co_return std::get<0>(std::move(finished));
    if (finished.index() == 2) co_return Outcome{Ending::kInterrupted, {}};
    co_return Outcome{
        Ending::kBlocked,
        fmt::format("the edit took longer than the {} allowed for one task, so it was stopped.",
                    human_duration(std::chrono::duration_cast<std::chrono::seconds>(
                        settings_.task_deadline)))};
}

asio::awaitable<TaskRun::Outcome> TaskRun::guarded_steps() {
    try {
        const auto ending = co_await steps();
        co_return Outcome{ending, {}};
    } catch (const Interrupted&) {
        co_return Outcome{Ending::kInterrupted, {}};
    } catch (const Blocked& blocked) {
        co_return Outcome{Ending::kBlocked, blocked.what(), blocked.fault()};
    } catch (const providers::ProviderError& error) {
        log_.error("Provider failed, task blocked", {{"provider", error.provider()},
                                                     {"operation", error.operation()},
                                                     {"status", error.status()},
                                                     {"error", error.what()}});
        co_return Outcome{Ending::kBlocked,
                          fmt::format("{} kept failing ({}); nothing was changed on the image.",
                                      provider_name(error.provider()),
                                      error.provider_message().empty()
                                          ? std::string(providers::to_string(error.kind()))
                                          : error.provider_message())};
    } catch (const boost::system::system_error& error) {
        // Cancelled by the deadline or the shutdown: their own branch reports it.
        if (is_cut_off(error)) throw;
        log_.error("Task failed unexpectedly", {{"error", error.what()}});
    } catch (const std::exception& error) {
        log_.error("Task failed unexpectedly", {{"error", error.what()}});
    }
    co_return Outcome{Ending::kBlocked,
                      "an internal error stopped the edit; the service's log has details."};
}

asio::awaitable<Ending> TaskRun::steps() {
    // A restart after the decision only finishes the writes that carry it out.
    if (const auto* decided = reuse("decision")) co_return co_await carry_out(*decided, nullptr);

    // Step 3: the task must still ask for an edit.
    if (!co_await check_task()) co_return Ending::kStopped;

    // Step 4: a model-ready PNG, uploaded so the image models can fetch it.
    co_await prepare_image();

    // Steps 5-8: iterate until an edit passes review or the iterations run out.
    for (int iteration = 1; iteration <= settings_.max_iterations; ++iteration) {
        // A long task keeps its lock: the TTL restarts with every iteration.
        if (lock_ != nullptr && !lock_->renew()) log_.warning("Task lock was lost");
        // Named, not a temporary: GCC 12 destroys aggregates inside co_await twice.
        const Round round{iteration, request_, source_url_, &source_for_review_, {}, &feedback_};
        auto candidates = co_await run_round(round);

        const Candidate* winner = nullptr;
        for (const auto& candidate : candidates) {
            const auto& verdict = candidate.attempt.verdict;
            if (!verdict || !verdict->passed) continue;
            if (winner == nullptr || verdict->score > winner->attempt.verdict->score) {
                winner = &candidate;  // candidates are in model priority order: ties keep the first
            }
        }
        if (winner != nullptr) co_return co_await finish_completed(*winner, iteration);
    }

    // Several edits at once may be too much for one go: try them one after the other.
    if (auto stepped = co_await step_by_step()) {
        co_return co_await finish_completed(*stepped, stepped->attempt.iteration);
    }

    // Step 8, no pass: a person takes over, with every attempt listed.
    co_return co_await finish_review(settings_.max_iterations);
}

asio::awaitable<bool> TaskRun::check_task() {
    const metrics::StepTimer timing(metrics::Step::kCheckTask);
    if (const auto* known = reuse("task")) {
        // Resumed: the request and attachments are the ones the run started with, but the box
        // is looked at again, since the person may have unticked it meanwhile.
        request_ = known->at("request").get<std::string>();
        for (const auto& item : known->at("attachments")) {
            providers::Attachment attachment;
            attachment.title = item.at("title").get<std::string>();
            attachment.url = item.at("url").get<std::string>();
            attachment.extension = item.at("extension").get<std::string>();
            attachment.mimetype = item.at("mimetype").get<std::string>();
            attachment.date_ms = item.at("date_ms").get<std::int64_t>();
            task_.attachments.push_back(std::move(attachment));
        }
        const auto now = co_await deps_.clickup.get_task(job_.task_id);
        if (!now.is_checked(settings_.ai_edit_field_id)) {
            log_.info("Task no longer ticked, stopping");
            co_return false;
        }
        co_return true;
    }

    task_ = co_await deps_.clickup.get_task(job_.task_id);
    if (!task_.is_checked(settings_.ai_edit_field_id)) {
        // Unticked since the webhook: the person changed their mind; nothing to write.
        log_.info("Task no longer ticked, stopping");
        co_return false;
    }
    request_ = trim(task_.description);
    if (request_.empty()) {
        throw Blocked(
            "the task description is empty. Write the edit you want in the description, for "
            "example \"change the price to 14,90 EUR and keep everything else\".");
    }
    nlohmann::json known{{"request", request_}, {"attachments", nlohmann::json::array()}};
    for (const auto& attachment : input_candidates(task_.attachments)) {
        known["attachments"].push_back({{"title", attachment.title},
                                        {"url", attachment.url},
                                        {"extension", attachment.extension},
                                        {"mimetype", attachment.mimetype},
                                        {"date_ms", attachment.date_ms}});
    }
    co_await record("task", std::move(known));
    co_return true;
}

asio::awaitable<void> TaskRun::prepare_image() {
    const metrics::StepTimer timing(metrics::Step::kPrepareImage);
    const auto file_name = fmt::format("{}{}.png", kSourcePrefix, job_.task_id);
    if (const auto* known = reuse("image")) {
        // Resumed: the prepared PNG is fetched back from where the models fetch it.
        source_url_ = known->at("source_url").get<std::string>();
        auto png = co_await deps_.clickup.download(source_url_,
                                                   deps_.images.limits().max_download_bytes);
        const image::ValidationLimits review_limits;
        source_for_review_ = co_await deps_.images.for_validation(png, review_limits, file_name);
        co_return;
    }

    const auto candidates = input_candidates(task_.attachments);
    if (candidates.empty()) {
        throw Blocked("the task has no image attached. Attach the image to edit to the task.");
    }

    // Newest first; an unreadable file is skipped for the next one, and its reason kept.
    std::string first_problem;
    bool prepared = false;
    for (const auto& attachment : candidates) {
        try {
            auto bytes = co_await deps_.clickup.download(
                attachment.url, deps_.images.limits().max_download_bytes);
            source_ = co_await deps_.images.prepare(std::move(bytes), attachment.title);
            prepared = true;
            log_.info("Image prepared", {{"file", attachment.title},
                                         {"width", source_.width},
                                         {"height", source_.height}});
            break;
        } catch (const image::ImageError& error) {
            log_.warning("Attachment not readable", {{"file", attachment.title},
                                                     {"kind", image::kind_name(error.kind())},
                                                     {"error", error.what()}});
            if (first_problem.empty()) first_problem = error.user_message();
        } catch (const providers::ProviderError& error) {
            if (error.provider() != "clickup" || error.operation() != "download") throw;
            log_.warning("Attachment download failed",
                         {{"file", attachment.title}, {"error", error.what()}});
            if (first_problem.empty()) {
                first_problem = fmt::format("the attached file '{}' could not be downloaded.",
                                            attachment.title);
            }
        }
    }
    if (!prepared) throw Blocked(first_problem);

    // One upload serves every model: fit the side range they all accept.
    int min_side = 1;
    int max_side = 1 << 30;
    for (const auto& model : settings_.models) {
        min_side = std::max(min_side, model.min_side);
        max_side = std::min(max_side, model.max_side);
    }
    if (min_side <= max_side) {
        source_ = co_await deps_.images.fit_for_model(source_, min_side, max_side);
    }
    // TODO: models whose side ranges do not overlap all get the unfitted image; each should get its own upload.

    const auto uploaded = co_await write_once(
        "write/source",
        [&]() -> asio::awaitable<nlohmann::json> {
            const auto answer = co_await deps_.clickup.upload_attachment(job_.task_id, file_name,
                                                                         "image/png", source_.png);
            nlohmann::json done{{"url", answer.url}};
            co_return done;
        },
        [&]() { return find_attachment(file_name); });
    source_url_ = uploaded.at("url").get<std::string>();
    if (source_url_.empty()) {
        // ClickUp answered without JSON: find our upload on the task by its name.
        const auto found = co_await find_attachment(file_name);
        if (found.is_object()) source_url_ = found.at("url").get<std::string>();
        if (source_url_.empty()) {
            throw Blocked("the prepared image could not be uploaded to the task.", Fault::kService);
        }
    }
    const image::ValidationLimits review_limits;
    source_for_review_ = co_await deps_.images.for_validation(source_.png, review_limits, file_name);

    // Attachment URLs work where ClickUp serves them publicly; otherwise WaveSpeed hosts a copy.
    if (settings_.image_handoff == "wavespeed") {
        source_url_ = co_await deps_.wavespeed.upload_media(source_.png, file_name, "image/png");
    }
    nlohmann::json prepared_image{{"file_name", file_name},
                                  {"source_url", source_url_},
                                  {"width", source_.width},
                                  {"height", source_.height}};
    co_await record("image", std::move(prepared_image));
    source_.png.clear();  // every later step works from the uploaded copy
}

asio::awaitable<std::vector<TaskRun::Candidate>> TaskRun::run_round(const Round& round) {
    const int iteration = round.iteration;
    rounds_ = std::max(rounds_, iteration);
    log_.info("Iteration started", {{"iteration", iteration}, {"step", round.step}});

    // Steps 5-6: every model enhances and generates at once.
    std::vector<asio::awaitable<Candidate>> work;
    for (const auto& model : settings_.models) work.push_back(enhance_and_generate(model, round));
    auto outcomes = co_await gather(std::move(work));
    // A model cut off by the shutdown or the deadline did not fail: the whole run stops.
    for (const auto& outcome : outcomes) {
        if (outcome.value) continue;
        try {
            std::rethrow_exception(outcome.error);
        } catch (const Interrupted&) {
            throw;
        } catch (const boost::system::system_error& error) {
            if (is_cut_off(error)) throw;
        } catch (...) {
        }
    }

    std::vector<Candidate> candidates;
    std::string failures;
    for (std::size_t i = 0; i < outcomes.size(); ++i) {
        const auto& model = settings_.models[i];
        if (outcomes[i].value) {
            candidates.push_back(std::move(*outcomes[i].value));
            continue;
        }
        Attempt failed;
        failed.iteration = iteration;
        failed.model = model.name;
        failed.step = round.step;
        try {
            std::rethrow_exception(outcomes[i].error);
        } catch (const std::exception& error) {
            failed.failure = failure_words(error);
            log_.warning("Model dropped out of iteration", {{"iteration", iteration},
                                                           {"model", model.name},
                                                           {"error", error.what()}});
        }
        failures += fmt::format("{}{}: {}", failures.empty() ? "" : "; ", model.name,
                                failed.failure);
        const auto already = std::find_if(
            dropped_models_.begin(), dropped_models_.end(),
            [&](const std::string& entry) { return entry.starts_with(model.name + " ("); });
        if (already == dropped_models_.end()) {
            dropped_models_.push_back(model.name + " (" + failed.failure + ")");
        }
        attempts_.push_back(std::move(failed));
    }
    if (candidates.empty()) {
        throw Blocked("every image model failed (" + failures + ").", Fault::kService);
    }

    // Step 7: one review at a time, with a pause between them.
    bool first = true;
    for (auto& candidate : candidates) {
        if (!first && settings_.validation_delay.count() > 0) {
            asio::steady_timer pause(co_await asio::this_coro::executor, settings_.validation_delay);
            co_await pause.async_wait(asio::use_awaitable);
        }
        first = false;
        co_await validate(candidate, round);
        attempts_.push_back(candidate.attempt);
        if (candidate.attempt.verdict) {
            const auto& verdict = *candidate.attempt.verdict;
            (*round.feedback)[candidate.attempt.model] =
                Feedback{candidate.attempt.prompt, verdict.issues, verdict.reasoning};
            reviewed_.push_back(candidate);
        }
    }
    if (std::none_of(candidates.begin(), candidates.end(),
                     [](const auto& c) { return c.attempt.verdict.has_value(); })) {
        throw Blocked("no edit could be reviewed: " + candidates.front().attempt.failure,
                      Fault::kService);
    }
    co_return candidates;
}

asio::awaitable<TaskRun::Candidate> TaskRun::enhance_and_generate(const config::ImageModel& model,
                                                                  const Round& round) {
    auto prompt = co_await enhance(model, round);
    co_return co_await generate(model, std::move(prompt), round);
}

asio::awaitable<std::string> TaskRun::enhance(const config::ImageModel& model, const Round& round) {
    const auto key = fmt::format("prompt/{}/{}", round.iteration, model.name);
    if (const auto* known = reuse(key)) co_return known->at("prompt").get<std::string>();
    const metrics::StepTimer timing(metrics::Step::kEnhance);

    const auto feedback = round.feedback->find(model.name);
    providers::ChatRequest request;
    request.system = deps_.prompts.enhancement_system(model.name);
    request.user = deps_.prompts.enhancement_user(
        round.request, feedback == round.feedback->end() ? nullptr : &feedback->second);
    const auto& input = *round.input_for_review;
    request.images.push_back({std::string(input.mime()), input.bytes});

    const auto started = Clock::now();
    auto permit = co_await pipeline_.enhancement_slots_.acquire();
    const auto answer = co_await deps_.openrouter.chat(std::move(request));
    auto prompt = clean_prompt(answer.text);
    log_.info("Prompt enhanced",
              {{"model", model.name},
               {"latency_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                  Clock::now() - started)
                                  .count()},
               {"chars", prompt.size()}});
    if (prompt.empty()) throw std::runtime_error("the prompt writer returned an empty prompt");
    nlohmann::json written{
        {"prompt", prompt},
        {"ms", std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count()}};
    co_await record(key, std::move(written));
    co_return prompt;
}

asio::awaitable<TaskRun::Candidate> TaskRun::generate(const config::ImageModel& model,
                                                      std::string prompt,
                                                      const Round& round) {
    const metrics::StepTimer timing(metrics::Step::kGenerate);
    const int iteration = round.iteration;
    const auto started = Clock::now();
    auto input = model.extra_input.is_object() ? model.extra_input : nlohmann::json::object();
    input["prompt"] = prompt;
    input["images"] = nlohmann::json::array({round.input_url});
    input["enable_base64_output"] = false;
    input["enable_sync_mode"] = false;

    // A submission costs money: it is made once, and recorded, so a restart waits for the
    // prediction it already paid for; only the polling is repeated.
    const auto key = fmt::format("{}/{}", iteration, model.name);
    std::string prediction_id;
    std::string output_url;
    if (const auto* known = reuse("generated/" + key)) {
        prediction_id = known->at("prediction_id").get<std::string>();
        output_url = known->at("output_url").get<std::string>();
    } else {
        if (const auto* submitted = reuse("submitted/" + key)) {
            prediction_id = submitted->at("prediction_id").get<std::string>();
        } else {
            // TODO: a crash between WaveSpeed taking a submission and its id being recorded submits it again on resume; WaveSpeed offers no lookup by a key of ours.
            prediction_id = co_await deps_.wavespeed.submit(model.path, std::move(input));
            nlohmann::json submitted_now{{"prediction_id", prediction_id}};
            co_await record("submitted/" + key, std::move(submitted_now));
        }
        const auto prediction = co_await deps_.wavespeed.wait_for(
            prediction_id, settings_.wavespeed_poll_interval, settings_.timeout_wavespeed_polling);
        if (prediction.status == providers::PredictionStatus::kFailed) {
            throw std::runtime_error(fmt::format("the image model failed: {}",
                                                 prediction.error.empty() ? "no reason given"
                                                                          : prediction.error));
        }
        if (prediction.outputs.empty()) {
            throw std::runtime_error("the image model returned no image");
        }
        output_url = prediction.outputs.front();
        nlohmann::json generated{
            {"prediction_id", prediction_id},
            {"output_url", output_url},
            {"ms",
             std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count()}};
        co_await record("generated/" + key, std::move(generated));
    }

    Candidate candidate;
    candidate.output_url = output_url;
    candidate.bytes = co_await deps_.wavespeed.download_output(
        candidate.output_url, deps_.images.limits().max_download_bytes);
    candidate.attempt.iteration = iteration;
    candidate.attempt.model = model.name;
    candidate.attempt.step = round.step;
    candidate.attempt.prompt = std::move(prompt);
    log_.info("Edit generated",
              {{"model", model.name},
               {"iteration", iteration},
               {"prediction_id", prediction_id},
               {"bytes", candidate.bytes.size()},
               {"latency_ms",
                std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started)
                    .count()}});
    co_return candidate;
}

asio::awaitable<void> TaskRun::validate(Candidate& candidate, const Round& round) {
    auto& attempt = candidate.attempt;
    const auto key = fmt::format("verdict/{}/{}", attempt.iteration, attempt.model);
    if (const auto* known = reuse(key)) {
        if (known->contains("score")) {
            Verdict verdict;
            verdict.score = known->at("score").get<double>();
            verdict.passed = known->at("passed").get<bool>();
            verdict.issues = known->at("issues").get<std::vector<std::string>>();
            verdict.reasoning = known->at("reasoning").get<std::string>();
            attempt.verdict = std::move(verdict);
        } else {
            attempt.failure = known->at("failure").get<std::string>();
        }
        co_return;
    }
    const metrics::StepTimer timing(metrics::Step::kValidate);
    const auto started = Clock::now();
    try {
        const image::ValidationLimits review_limits;
        const auto edited =
            co_await deps_.images.for_validation(candidate.bytes, review_limits, "result");
        providers::ChatRequest request;
        request.system = deps_.prompts.validation_system();
        // Judged against this round's input: a step is checked against the step before it.
        request.user = deps_.prompts.validation_user(round.request, job_.task_id, attempt.model,
                                                     attempt.iteration);
        const auto& input = *round.input_for_review;
        request.images.push_back({std::string(input.mime()), input.bytes});
        request.images.push_back({std::string(edited.mime()), edited.bytes});

        auto permit = co_await pipeline_.validation_slots_.acquire();
        const auto answer = co_await deps_.openrouter.chat(std::move(request));
        auto parsed = parse_verdict(answer.text, settings_.validation_pass_threshold);
        if (parsed.verdict) {
            attempt.verdict = std::move(parsed.verdict);
        } else {
            attempt.failure = "the review's answer could not be read (" + parsed.error + ")";
        }
    } catch (const image::ImageError& error) {
        attempt.failure = "the model's image could not be read: " + error.user_message();
    } catch (const providers::ProviderError& error) {
        // Infrastructure, not a bad edit: reported as such, never as a score of 0.
        attempt.failure = "the review could not be done: " + failure_words(error);
    }
    const auto review_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
    nlohmann::json reviewed{{"ms", review_ms}};
    if (attempt.verdict) {
        reviewed["score"] = attempt.verdict->score;
        reviewed["passed"] = attempt.verdict->passed;
        reviewed["issues"] = attempt.verdict->issues;
        reviewed["reasoning"] = attempt.verdict->reasoning;
    } else {
        reviewed["failure"] = attempt.failure;
    }
    co_await record(key, std::move(reviewed));
    log_.info("Edit reviewed",
              {{"model", attempt.model},
               {"iteration", attempt.iteration},
               {"score", attempt.verdict ? attempt.verdict->score : -1.0},
               {"passed", attempt.verdict && attempt.verdict->passed},
               {"failure", attempt.failure},
               {"latency_ms",
                std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started)
                    .count()}});
}

asio::awaitable<std::vector<std::string>> TaskRun::split_request() {
    if (const auto* known = reuse("split")) {
        co_return known->at("edits").get<std::vector<std::string>>();
    }
    providers::ChatRequest request;
    request.system = deps_.prompts.split_system();
    request.user = "The designer's request:\n\n" + request_;
    auto permit = co_await pipeline_.enhancement_slots_.acquire();
    const auto answer = co_await deps_.openrouter.chat(std::move(request));
    std::vector<std::string> edits;
    if (const auto list = extract_json(answer.text, '[')) {
        for (const auto& item : nlohmann::json::parse(*list)) {
            if (item.is_string() && !trim(item.get<std::string>()).empty()) {
                edits.push_back(trim(item.get<std::string>()));
            }
        }
    }
    nlohmann::json split{{"edits", edits}};
    co_await record("split", std::move(split));
    co_return edits;
}

asio::awaitable<std::optional<TaskRun::Candidate>> TaskRun::step_by_step() {
    std::vector<std::string> edits;
    try {
        edits = co_await split_request();
    } catch (const providers::ProviderError& error) {
        log_.warning("Request could not be split", {{"error", error.what()}});
    }
    if (edits.size() < 2) co_return std::nullopt;
    log_.info("Step-by-step mode", {{"steps", edits.size()}});

    // Each edit is made on the previous step's best result and judged against it.
    std::string input_url = source_url_;
    image::EncodedImage input_for_review = source_for_review_;
    std::optional<Candidate> current;
    try {
        for (const auto& edit : edits) {
            std::map<std::string, Feedback> feedback;
            std::optional<Candidate> best;
            for (int attempt = 1; attempt <= settings_.max_step_attempts && !best; ++attempt) {
                const Round round{rounds_ + 1, edit, input_url, &input_for_review, edit,
                                  &feedback};
                auto candidates = co_await run_round(round);
                for (auto& candidate : candidates) {
                    const auto& verdict = candidate.attempt.verdict;
                    if (!verdict || !verdict->passed) continue;
                    if (!best || verdict->score > best->attempt.verdict->score) best = candidate;
                }
            }
            if (!best) co_return std::nullopt;
            current = std::move(best);
            input_url = current->output_url;
            const image::ValidationLimits review_limits;
            input_for_review =
                co_await deps_.images.for_validation(current->bytes, review_limits, "step");
        }
    } catch (const Blocked& blocked) {
        // The models failing here ends step-by-step mode, not the attempts already made.
        log_.warning("Step-by-step mode stopped", {{"reason", blocked.what()}});
        co_return std::nullopt;
    }

    // The last step's result counts only if it also passes against the whole request.
    Candidate final_result = *current;
    final_result.attempt.iteration = ++rounds_;
    final_result.attempt.step = "all steps together";
    final_result.attempt.verdict.reset();
    const Round whole{rounds_, request_, source_url_, &source_for_review_, {}, &feedback_};
    co_await validate(final_result, whole);
    attempts_.push_back(final_result.attempt);
    if (!final_result.attempt.verdict || !final_result.attempt.verdict->passed) {
        if (final_result.attempt.verdict) reviewed_.push_back(final_result);
        co_return std::nullopt;
    }
    co_return final_result;
}

// --- Endings ---

std::string TaskRun::result_file_name(const Attempt& attempt, bool best_attempt,
                                      const std::string& bytes) const {
    // The file keeps its real format: a JPEG from the model is uploaded as a JPEG.
    return fmt::format("{}{}_{}_it{}{}{}", kResultPrefix, job_.task_id, attempt.model,
                       attempt.iteration, best_attempt ? "_best-attempt" : "",
                       image::extension(image::sniff(bytes)));
}

asio::awaitable<Ending> TaskRun::finish_completed(const Candidate& winner, int iteration) {
    // Step 8, success. Recorded as a decision first, then carried out.
    const auto file_name = result_file_name(winner.attempt, false, winner.bytes);
    const auto elapsed = std::chrono::duration_cast<std::chrono::seconds>(
        std::chrono::system_clock::now() - job_.received_at);
    // Built before the co_await: GCC 12 destroys aggregate temporaries inside a co_await
    // expression twice.
    const auto comment = success_comment(
        {file_name, &winner.attempt, iteration, settings_.max_iterations, elapsed, dropped_models_});
    nlohmann::json decision{{"ending", to_string(Ending::kCompleted)},
                            {"status", settings_.status_complete},
                            {"comment", comment},
                            {"model", winner.attempt.model},
                            {"iteration", iteration},
                            {"score", winner.attempt.verdict->score},
                            {"upload", {{"file_name", file_name},
                                        {"output_url", winner.output_url},
                                        {"required", true}}}};
    co_await record("attempts", attempts_summary());
    co_await record("decision", decision);
    co_return co_await carry_out(std::move(decision), &winner.bytes);
}

asio::awaitable<Ending> TaskRun::finish_review(int iterations_used) {
    const Attempt* best = best_attempt(attempts_, pipeline_.model_priority_);
    const Candidate* best_candidate = nullptr;
    if (best != nullptr) {
        const auto found = std::find_if(reviewed_.begin(), reviewed_.end(), [&](const auto& c) {
            return c.attempt.model == best->model && c.attempt.iteration == best->iteration;
        });
        if (found != reviewed_.end()) best_candidate = &*found;
    }
    nlohmann::json decision{{"ending", to_string(Ending::kNeedsReview)},
                            {"status", settings_.status_needs_review}};
    // If the best attempt cannot be uploaded, the comment still lists every attempt; it just
    // cannot point at a file.
    const auto comment_without_file = review_comment(
        {settings_.validation_pass_threshold, iterations_used, &attempts_, best, {}});
    decision["comment_without_file"] = comment_without_file;
    decision["comment"] = comment_without_file;
    if (best_candidate != nullptr) {
        const auto file_name = result_file_name(best_candidate->attempt, true, best_candidate->bytes);
        const auto comment = review_comment(
            {settings_.validation_pass_threshold, iterations_used, &attempts_, best, file_name});
        decision["comment"] = comment;
        decision["upload"] = {{"file_name", file_name},
                              {"output_url", best_candidate->output_url},
                              {"required", false}};
    }
    co_await record("attempts", attempts_summary());
    co_await record("decision", decision);
    co_return co_await carry_out(std::move(decision),
                                 best_candidate != nullptr ? &best_candidate->bytes : nullptr);
}

asio::awaitable<void> TaskRun::finish_blocked(const std::string& reason, Fault fault) {
    log_.error("Task blocked", {{"status", settings_.status_blocked}, {"reason", reason}});
    nlohmann::json decision{{"ending", to_string(Ending::kBlocked)},
                            {"status", settings_.status_blocked},
                            {"comment", blocked_comment(reason, fault)},
                            {"reason", reason}};
    co_await record("attempts", attempts_summary());
    co_await record("decision", decision);
    (void)co_await carry_out(std::move(decision), nullptr);
}

asio::awaitable<Ending> TaskRun::carry_out(nlohmann::json decision,
                                           const std::string* result_bytes) {
    const metrics::StepTimer timing(metrics::Step::kWrite);
    const auto ending_name = decision.at("ending").get<std::string>();
    auto comment = decision.at("comment").get<std::string>();
    if (decision.contains("upload")) {
        const auto& upload = decision.at("upload");
        if (upload.at("required").get<bool>()) {
            // Until the result is on the task nothing is delivered: a failure here blocks.
            (void)co_await upload_result(upload, result_bytes);
        } else {
            try {
                (void)co_await upload_result(upload, result_bytes);
            } catch (const std::exception& error) {
                if (const auto* cut = dynamic_cast<const boost::system::system_error*>(&error);
                    cut != nullptr && is_cut_off(*cut)) {
                    throw;
                }
                log_.error("Task write failed",
                           {{"operation", "upload_attachment"}, {"error", error.what()}});
                comment = decision.at("comment_without_file").get<std::string>();
            }
        }
    }
    co_await end_task(decision.at("status").get<std::string>(), std::move(comment));

    if (ending_name == to_string(Ending::kCompleted)) {
        log_.info("Task completed",
                  {{"status", decision.at("status").get<std::string>()},
                   {"model", decision.at("model").get<std::string>()},
                   {"iteration", decision.at("iteration").get<int>()},
                   {"score", decision.at("score").get<double>()}});
        co_return Ending::kCompleted;
    }
    if (ending_name == to_string(Ending::kNeedsReview)) {
        log_.info("Task needs human review",
                  {{"status", decision.at("status").get<std::string>()},
                   {"attempts", attempts_.size()}});
        co_return Ending::kNeedsReview;
    }
    co_return Ending::kBlocked;
}

asio::awaitable<std::string> TaskRun::upload_result(const nlohmann::json& upload,
                                                    const std::string* bytes) {
    const auto file_name = upload.at("file_name").get<std::string>();
    (void)co_await write_once(
        "write/result",
        [&]() -> asio::awaitable<nlohmann::json> {
            // Resumed: the model's output is fetched again from where the model left it.
            std::string fetched;
            if (bytes == nullptr) {
                fetched = co_await deps_.wavespeed.download_output(
                    upload.at("output_url").get<std::string>(),
                    deps_.images.limits().max_download_bytes);
            }
            const auto& content = bytes != nullptr ? *bytes : fetched;
            const auto answer = co_await deps_.clickup.upload_attachment(
                job_.task_id, file_name, std::string(image::mime_type(image::sniff(content))),
                content);
            nlohmann::json done{{"url", answer.url}};
            co_return done;
        },
        [&]() { return find_attachment(file_name); });
    co_return file_name;
}

asio::awaitable<bool> TaskRun::write_to_task(std::string_view operation,
                                             asio::awaitable<nlohmann::json> write) {
    try {
        (void)co_await std::move(write);
        co_return true;
    } catch (const boost::system::system_error& error) {
        if (is_cut_off(error)) throw;
        log_.error("Task write failed", {{"operation", operation}, {"error", error.what()}});
    } catch (const std::exception& error) {
        log_.error("Task write failed", {{"operation", operation}, {"error", error.what()}});
    }
    ending_unwritten_ = true;
    co_return false;
}

asio::awaitable<void> TaskRun::end_task(std::string status, std::string comment) {
    // Untick, status, comment, each on its own: a failing status change must not swallow the
    // comment, and a task never stays ticked because a later write failed.
    auto untick = write_once(
        "write/untick",
        [&]() -> asio::awaitable<nlohmann::json> {
            co_await deps_.clickup.set_checkbox(job_.task_id, settings_.ai_edit_field_id, false);
            co_return nlohmann::json(true);
        },
        [&]() -> asio::awaitable<nlohmann::json> {
            const auto task = co_await deps_.clickup.get_task(job_.task_id);
            co_return task.is_checked(settings_.ai_edit_field_id) ? nlohmann::json()
                                                                  : nlohmann::json(true);
        });
    co_await write_to_task("set_checkbox", std::move(untick));

    auto set_status = write_once(
        "write/status",
        [&]() -> asio::awaitable<nlohmann::json> {
            co_await deps_.clickup.set_status(job_.task_id, status);
            co_return nlohmann::json(true);
        },
        [&]() -> asio::awaitable<nlohmann::json> {
            const auto task = co_await deps_.clickup.get_task(job_.task_id);
            co_return lower(task.status) == lower(status) ? nlohmann::json(true)
                                                          : nlohmann::json();
        });
    co_await write_to_task("set_status", std::move(set_status));

    // The comment carries the run's reference: after a restart, it is how we know whether
    // ClickUp took it; operators find the run's history with it too.
    const auto reference = fmt::format("[image-edit-agent run {}]", job_.run_id);
    comment = trim(comment) + "\n\n" + reference;
    auto add_comment = write_once(
        "write/comment",
        [&]() -> asio::awaitable<nlohmann::json> {
            const auto id = co_await deps_.clickup.add_comment(job_.task_id, comment, true);
            co_return nlohmann::json(id);
        },
        [&]() -> asio::awaitable<nlohmann::json> {
            const auto comments = co_await deps_.clickup.get_comments(job_.task_id);
            for (const auto& posted : comments) {
                if (posted.text.find(reference) != std::string::npos) {
                    co_return nlohmann::json(posted.id);
                }
            }
            co_return nlohmann::json();
        });
    co_await write_to_task("add_comment", std::move(add_comment));
}

// --- The journal ---

const nlohmann::json* TaskRun::reuse(const std::string& key) {
    if (const auto found = recorded_.find(key); found != recorded_.end()) return &found->second;
    if (pipeline_.pausing_ || (given_up_ && *given_up_)) throw Interrupted{};
    return nullptr;
}

asio::awaitable<void> TaskRun::record(std::string key, nlohmann::json value) {
    recorded_[key] = value;
    co_await deps_.journal.record_checkpoint(job_.run_id, std::move(key), std::move(value));
}

template <typename Write, typename Look>
asio::awaitable<nlohmann::json> TaskRun::write_once(std::string key, Write write, Look look) {
    const auto done_key = key + "/done";
    if (const auto* done = reuse(done_key)) co_return *done;
    if (const auto asked = recorded_.find(key + "/asked"); asked != recorded_.end()) {
        // A restart came between asking ClickUp and hearing back: look before repeating, once
        // the earlier request has had its whole timeout, so that it is not still on its way.
        const auto asked_at = std::chrono::system_clock::time_point(std::chrono::milliseconds(
            asked->second.is_object() ? asked->second.value("at_ms", std::int64_t{0}) : 0));
        const auto settled = asked_at + settings_.timeout_clickup;
        if (const auto now = std::chrono::system_clock::now(); settled > now) {
            asio::steady_timer pause(co_await asio::this_coro::executor, settled - now);
            co_await pause.async_wait(asio::use_awaitable);
        }
        auto found = co_await look();
        if (!found.is_null()) {
            log_.info("Write found done after restart", {{"write", key}});
            co_await record(done_key, found);
            co_return found;
        }
    }
    nlohmann::json asked{{"at_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count()}};
    co_await record(key + "/asked", std::move(asked));
    auto done = co_await write();
    co_await record(done_key, done);
    co_return done;
}

asio::awaitable<nlohmann::json> TaskRun::find_attachment(const std::string& file_name) {
    const auto task = co_await deps_.clickup.get_task(job_.task_id);
    for (const auto& attachment : task.attachments) {
        if (attachment.title == file_name) {
            nlohmann::json found{{"url", attachment.url}};
            co_return found;
        }
    }
    co_return nlohmann::json();
}

nlohmann::json TaskRun::attempts_summary() const {
    auto summary = nlohmann::json::array();
    for (const auto& attempt : attempts_) {
        nlohmann::json item{{"iteration", attempt.iteration},
                            {"model", attempt.model},
                            {"prompt", attempt.prompt}};
        if (!attempt.step.empty()) item["step"] = attempt.step;
        if (attempt.verdict) {
            item["score"] = attempt.verdict->score;
            item["passed"] = attempt.verdict->passed;
            item["issues"] = attempt.verdict->issues;
            item["reasoning"] = attempt.verdict->reasoning;
        }
        if (!attempt.failure.empty()) item["failure"] = attempt.failure;
        summary.push_back(std::move(item));
    }
    return summary;
}

// --- Pipeline ---

namespace {

/// Counts a run that ended; an interrupted one has not ended and is not counted.
void count_ending(Ending ending) {
    switch (ending) {
        case Ending::kCompleted:
            return metrics::task_finished(metrics::TaskState::kComplete);
        case Ending::kNeedsReview:
            return metrics::task_finished(metrics::TaskState::kNeedsReview);
        case Ending::kBlocked:
            return metrics::task_finished(metrics::TaskState::kBlocked);
        case Ending::kStopped:
            return metrics::task_finished(metrics::TaskState::kStopped);
        case Ending::kInterrupted:
            return;
    }
}

}  // namespace

std::string_view to_string(Ending ending) {
    switch (ending) {
        case Ending::kCompleted:
            return "complete";
        case Ending::kNeedsReview:
            return "needs_review";
        case Ending::kBlocked:
            return "blocked";
        case Ending::kStopped:
            return "stopped";
        case Ending::kInterrupted:
            return "interrupted";
    }
    return "unknown";
}

Pipeline::Pipeline(asio::any_io_executor executor, Dependencies dependencies)
    : executor_(executor),
      deps_(dependencies),
      enhancement_slots_(executor, static_cast<std::size_t>(deps_.settings.rate_limit_enhancement)),
      validation_slots_(executor, static_cast<std::size_t>(deps_.settings.rate_limit_validation)),
      task_slots_(executor, static_cast<std::size_t>(std::max(1, deps_.settings.max_concurrent_tasks))),
      stop_signal_(executor, asio::steady_timer::time_point::max()) {
    auto models = deps_.settings.models;
    std::stable_sort(models.begin(), models.end(),
                     [](const auto& a, const auto& b) { return a.priority < b.priority; });
    for (const auto& model : models) model_priority_.push_back(model.name);
}

asio::awaitable<service::Admission> Pipeline::admit(service::TaskJob job,
                                                    locking::TaskLocks::Guard lock,
                                                    bool wait_for_end) {
    service::Admission admission;
    if (const auto problem = deps_.journal.problem()) {
        logging::Logger("pipeline").error("Task not taken: journal unusable",
                                          {{"task_id", job.task_id}, {"error", *problem}});
        admission.kind = service::Admission::Kind::kUnavailable;
        co_return admission;
    }
    try {
        const auto run_id =
            co_await deps_.journal.record_job(job.task_id, job.delivery_id, job.received_at);
        if (!run_id) {
            admission.kind = service::Admission::Kind::kRedelivered;
            co_return admission;
        }
        job.run_id = *run_id;
    } catch (const std::exception& error) {
        logging::Logger("pipeline").error("Task could not be recorded",
                                          {{"task_id", job.task_id}, {"error", error.what()}});
        admission.kind = service::Admission::Kind::kUnavailable;
        co_return admission;
    }
    if (!wait_for_end) {
        spawn(std::move(job), std::move(lock), {}, 0, 0, {}, {});
        co_return admission;
    }
    ++in_flight_;
    const auto slot = co_await task_slots_.acquire();
    const std::vector<std::pair<std::string, nlohmann::json>> nothing_recorded;
    TaskRun task_run(*this, std::move(job), &lock, nothing_recorded, 0, 0);
    const auto ending = co_await task_run.run();
    count_ending(ending);
    --in_flight_;
    admission.ending = std::string(to_string(ending));
    co_return admission;
}

void Pipeline::resume(journal::JobRecord job, locking::TaskLocks::Guard lock, OnEnd on_end,
                      std::shared_ptr<const bool> given_up) {
    service::TaskJob task_job{job.task_id, job.delivery_id, job.received_at, job.id};
    spawn(std::move(task_job), std::move(lock), std::move(job.checkpoints), job.resumes,
          job.stalled_resumes, std::move(on_end), std::move(given_up));
}

std::size_t Pipeline::free_slots() const {
    const auto cap = static_cast<std::size_t>(std::max(1, deps_.settings.max_concurrent_tasks));
    return in_flight_ >= cap ? 0 : cap - in_flight_;
}

asio::awaitable<Ending> Pipeline::run(service::TaskJob job) {
    if (job.delivery_id.empty()) {
        job.delivery_id = fmt::format("replay:{}", std::chrono::duration_cast<std::chrono::milliseconds>(
                                                       job.received_at.time_since_epoch())
                                                       .count());
    }
    const auto run_id =
        co_await deps_.journal.record_job(job.task_id, job.delivery_id, job.received_at);
    if (!run_id) throw std::runtime_error("this delivery is already in the journal");
    job.run_id = *run_id;
    const std::vector<std::pair<std::string, nlohmann::json>> nothing_recorded;
    TaskRun task_run(*this, std::move(job), nullptr, nothing_recorded, 0, 0);
    co_return co_await task_run.run();
}

void Pipeline::pause() { pausing_ = true; }

void Pipeline::stop() {
    pausing_ = true;
    stop_signal_.cancel();
}

void Pipeline::spawn(service::TaskJob job, locking::TaskLocks::Guard lock,
                     std::vector<std::pair<std::string, nlohmann::json>> recorded, int resumes,
                     int stalled_resumes, OnEnd on_end, std::shared_ptr<const bool> given_up) {
    ++in_flight_;
    asio::co_spawn(
        executor_,
        [this, job = std::move(job), lock = std::move(lock), recorded = std::move(recorded),
         resumes, stalled_resumes, on_end = std::move(on_end),
         given_up = std::move(given_up)]() mutable -> asio::awaitable<void> {
            // Past MAX_CONCURRENT_TASKS a run waits here, recorded, for a slot.
            const auto slot = co_await task_slots_.acquire();
            const auto task_id = job.task_id;
            TaskRun task_run(*this, std::move(job), &lock, recorded, resumes, stalled_resumes);
            task_run.stop_when(std::move(given_up));
            // A run whose journal failed under it has not ended: it stays unfinished, to be
            // picked up again, and whoever started it still hears of it (locks, the queue).
            auto ending = Ending::kInterrupted;
            try {
                ending = co_await task_run.run();
                count_ending(ending);
            } catch (const std::exception& error) {
                logging::Logger("pipeline").error(
                    "Task run stopped: its progress could not be recorded",
                    {{"task_id", task_id}, {"error", error.what()}});
            }
            if (on_end) co_await on_end(ending);
            // The lock goes when this coroutine ends, after every write to the task.
        },
        [this](std::exception_ptr) { --in_flight_; });
}

}  // namespace iea::pipeline
