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
    TaskRun(Pipeline& pipeline, service::TaskJob job, locking::TaskLocks::Guard* lock)
        : pipeline_(pipeline),
          lock_(lock),
          deps_(pipeline.deps_),
          settings_(pipeline.deps_.settings),
          job_(std::move(job)),
          log_(logging::Logger("pipeline").with({{"task_id", job_.task_id}})) {}

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

    asio::awaitable<void> finish_completed(const Candidate& winner, int iteration);
    asio::awaitable<void> finish_review(int iterations_used);
    asio::awaitable<void> finish_blocked(const std::string& reason, Fault fault);
    /// One ClickUp write whose failure must not stop the writes after it: logged, not thrown.
    asio::awaitable<bool> write_to_task(std::string_view operation, asio::awaitable<void> write);
    asio::awaitable<std::string> upload_result(const Candidate& candidate, bool best_attempt);
    asio::awaitable<void> untick();
    asio::awaitable<void> add_comment(std::string text);
    /// The last writes of every ending: untick the box, set the status, comment.
    asio::awaitable<void> end_task(std::string status, std::string comment);

    Pipeline& pipeline_;
    locking::TaskLocks::Guard* lock_;  // null for a replay without a lock
    const Dependencies& deps_;
    const config::Settings& settings_;
    service::TaskJob job_;
    logging::Logger log_;
    Clock::time_point started_ = Clock::now();

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
    using namespace asio::experimental::awaitable_operators;
    log_.info("Task started", {{"delivery_id", job_.delivery_id}});

    // The deadline races the steps. `||` waits for the first branch that succeeds, so the
    // steps report failures as values: a thrown reason would be held until the deadline.
    asio::steady_timer deadline(co_await asio::this_coro::executor, settings_.task_deadline);
    auto finished = co_await (guarded_steps() || deadline.async_wait(asio::use_awaitable) ||
                              pipeline_.stop_signal_.async_wait(asio::as_tuple(asio::use_awaitable)));

    std::string blocked_reason;
    Fault fault = Fault::kService;
    if (finished.index() == 0) {
        auto outcome = std::get<0>(std::move(finished));
        if (outcome.blocked_reason.empty()) co_return outcome.ending;
        blocked_reason = std::move(outcome.blocked_reason);
        fault = outcome.fault;
    } else if (finished.index() == 2) {
        blocked_reason =
            "the edit service was restarted before this edit finished, so it was stopped; "
            "nothing was changed on the image.";
    } else {
        blocked_reason = fmt::format(
            "the edit took longer than the {} allowed for one task, so it was stopped.",
            human_duration(
                std::chrono::duration_cast<std::chrono::seconds>(settings_.task_deadline)));
    }

    co_await finish_blocked(blocked_reason, fault);
    co_return Ending::kBlocked;
}

asio::awaitable<TaskRun::Outcome> TaskRun::guarded_steps() {
    try {
        const auto ending = co_await steps();
        co_return Outcome{ending, {}};
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
        // Cancelled by the deadline: the deadline's own branch reports it.
        if (error.code() == asio::error::operation_aborted) throw;
        log_.error("Task failed unexpectedly", {{"error", error.what()}});
    } catch (const std::exception& error) {
        log_.error("Task failed unexpectedly", {{"error", error.what()}});
    }
    co_return Outcome{Ending::kBlocked,
                      "an internal error stopped the edit; the service's log has details."};
}

asio::awaitable<Ending> TaskRun::steps() {
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
        if (winner != nullptr) {
            co_await finish_completed(*winner, iteration);
            co_return Ending::kCompleted;
        }
    }

    // Several edits at once may be too much for one go: try them one after the other.
    if (auto stepped = co_await step_by_step()) {
        co_await finish_completed(*stepped, stepped->attempt.iteration);
        co_return Ending::kCompleted;
    }

    // Step 8, no pass: a person takes over, with every attempt listed.
    co_await finish_review(settings_.max_iterations);
    co_return Ending::kNeedsReview;
}

asio::awaitable<bool> TaskRun::check_task() {
    const metrics::StepTimer timing(metrics::Step::kCheckTask);
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
    co_return true;
}

asio::awaitable<void> TaskRun::prepare_image() {
    const metrics::StepTimer timing(metrics::Step::kPrepareImage);
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

    const auto file_name = fmt::format("{}{}.png", kSourcePrefix, job_.task_id);
    const auto uploaded =
        co_await deps_.clickup.upload_attachment(job_.task_id, file_name, "image/png", source_.png);
    source_url_ = uploaded.url;
    if (source_url_.empty()) {
        // ClickUp answered without JSON: find our upload on the task by its name.
        const auto refreshed = co_await deps_.clickup.get_task(job_.task_id);
        for (const auto& attachment : refreshed.attachments) {
            if (attachment.title == file_name) source_url_ = attachment.url;
        }
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
}

asio::awaitable<std::vector<TaskRun::Candidate>> TaskRun::run_round(const Round& round) {
    const int iteration = round.iteration;
    rounds_ = std::max(rounds_, iteration);
    log_.info("Iteration started", {{"iteration", iteration}, {"step", round.step}});

    // Steps 5-6: every model enhances and generates at once.
    std::vector<asio::awaitable<Candidate>> work;
    for (const auto& model : settings_.models) work.push_back(enhance_and_generate(model, round));
    auto outcomes = co_await gather(std::move(work));

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

    // A submission costs money: it is made once; only the polling is retried.
    const auto prediction_id = co_await deps_.wavespeed.submit(model.path, std::move(input));
    const auto prediction = co_await deps_.wavespeed.wait_for(
        prediction_id, settings_.wavespeed_poll_interval, settings_.timeout_wavespeed_polling);
    if (prediction.status == providers::PredictionStatus::kFailed) {
        throw std::runtime_error(fmt::format("the image model failed: {}",
                                             prediction.error.empty() ? "no reason given"
                                                                      : prediction.error));
    }
    if (prediction.outputs.empty()) throw std::runtime_error("the image model returned no image");

    Candidate candidate;
    candidate.output_url = prediction.outputs.front();
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
    const metrics::StepTimer timing(metrics::Step::kValidate);
    auto& attempt = candidate.attempt;
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

asio::awaitable<std::string> TaskRun::upload_result(const Candidate& candidate, bool best_attempt) {
    // The file keeps its real format: a JPEG from the model is uploaded as a JPEG.
    const auto format = image::sniff(candidate.bytes);
    const auto file_name = fmt::format("{}{}_{}_it{}{}{}", kResultPrefix, job_.task_id,
                                       candidate.attempt.model, candidate.attempt.iteration,
                                       best_attempt ? "_best-attempt" : "",
                                       image::extension(format));
    co_await deps_.clickup.upload_attachment(job_.task_id, file_name,
                                             std::string(image::mime_type(format)),
                                             candidate.bytes);
    co_return file_name;
}

asio::awaitable<void> TaskRun::untick() {
    co_await deps_.clickup.set_checkbox(job_.task_id, settings_.ai_edit_field_id, false);
}

asio::awaitable<bool> TaskRun::write_to_task(std::string_view operation,
                                             asio::awaitable<void> write) {
    try {
        co_await std::move(write);
        co_return true;
    } catch (const std::exception& error) {
        log_.error("Task write failed", {{"operation", operation}, {"error", error.what()}});
        co_return false;
    }
}

asio::awaitable<void> TaskRun::finish_completed(const Candidate& winner, int iteration) {
    const metrics::StepTimer timing(metrics::Step::kWrite);
    // Step 8, success: upload, untick, status, comment, in that order. Until the upload
    // succeeds nothing is delivered and a failure blocks the task; after it, the result is on
    // the task, so a failing write is logged and the writes after it still happen.
    const auto file_name = co_await upload_result(winner, false);
    const auto elapsed = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - started_);
    // Built before the co_await: GCC 12 destroys aggregate temporaries inside a co_await
    // expression twice.
    const auto comment = success_comment(
        {file_name, &winner.attempt, iteration, settings_.max_iterations, elapsed, dropped_models_});

    co_await end_task(settings_.status_complete, comment);
    log_.info("Task completed", {{"status", settings_.status_complete},
                                 {"model", winner.attempt.model},
                                 {"iteration", iteration},
                                 {"score", winner.attempt.verdict->score},
                                 {"latency_ms", elapsed.count() * 1000}});
}

asio::awaitable<void> TaskRun::finish_review(int iterations_used) {
    const metrics::StepTimer timing(metrics::Step::kWrite);
    const Attempt* best = best_attempt(attempts_, pipeline_.model_priority_);
    std::string best_file;
    if (best != nullptr) {
        const auto candidate = std::find_if(reviewed_.begin(), reviewed_.end(), [&](const auto& c) {
            return c.attempt.model == best->model && c.attempt.iteration == best->iteration;
        });
        if (candidate != reviewed_.end()) {
            try {
                best_file = co_await upload_result(*candidate, true);
            } catch (const std::exception& error) {
                // The comment still lists every attempt; it just cannot point at a file.
                log_.error("Task write failed",
                           {{"operation", "upload_attachment"}, {"error", error.what()}});
            }
        }
    }
    const auto comment = review_comment(
        {settings_.validation_pass_threshold, iterations_used, &attempts_, best, best_file});
    co_await end_task(settings_.status_needs_review, comment);
    log_.info("Task needs human review", {{"status", settings_.status_needs_review},
                                          {"attempts", attempts_.size()}});
}

asio::awaitable<void> TaskRun::finish_blocked(const std::string& reason, Fault fault) {
    const metrics::StepTimer timing(metrics::Step::kWrite);
    log_.error("Task blocked", {{"status", settings_.status_blocked}, {"reason", reason}});
    co_await end_task(settings_.status_blocked, blocked_comment(reason, fault));
}

asio::awaitable<void> TaskRun::end_task(std::string status, std::string comment) {
    // Untick, status, comment, each on its own: a failing status change must not swallow the
    // comment, and a task never stays ticked because a later write failed.
    auto untick_write = untick();
    co_await write_to_task("set_checkbox", std::move(untick_write));
    auto status_write = deps_.clickup.set_status(job_.task_id, std::move(status));
    co_await write_to_task("set_status", std::move(status_write));
    auto comment_write = add_comment(std::move(comment));
    co_await write_to_task("add_comment", std::move(comment_write));
}

asio::awaitable<void> TaskRun::add_comment(std::string text) {
    (void)co_await deps_.clickup.add_comment(job_.task_id, std::move(text), true);
}

Pipeline::Pipeline(asio::any_io_executor executor, Dependencies dependencies)
    : executor_(executor),
      deps_(dependencies),
      enhancement_slots_(executor, static_cast<std::size_t>(deps_.settings.rate_limit_enhancement)),
      validation_slots_(executor, static_cast<std::size_t>(deps_.settings.rate_limit_validation)),
      stop_signal_(executor, asio::steady_timer::time_point::max()) {
    auto models = deps_.settings.models;
    std::stable_sort(models.begin(), models.end(),
                     [](const auto& a, const auto& b) { return a.priority < b.priority; });
    for (const auto& model : models) model_priority_.push_back(model.name);
}

asio::awaitable<Ending> Pipeline::run(service::TaskJob job) {
    TaskRun task_run(*this, std::move(job), nullptr);
    co_return co_await task_run.run();
}

void Pipeline::stop() {
    // TODO: a task stopped while it writes its result can end blocked with the result attached; the journal of issue 6 should resume such tasks instead of stopping them.
    stop_signal_.cancel();
}

namespace {

metrics::TaskState to_task_state(Ending ending) {
    switch (ending) {
        case Ending::kCompleted:
            return metrics::TaskState::kComplete;
        case Ending::kNeedsReview:
            return metrics::TaskState::kNeedsReview;
        case Ending::kBlocked:
            return metrics::TaskState::kBlocked;
        case Ending::kStopped:
            break;
    }
    return metrics::TaskState::kStopped;
}

}  // namespace

void Pipeline::start(service::TaskJob job, locking::TaskLocks::Guard lock) {
    ++in_flight_;
    asio::co_spawn(
        executor_,
        [this, job = std::move(job), lock = std::move(lock)]() mutable -> asio::awaitable<void> {
            TaskRun task_run(*this, std::move(job), &lock);
            metrics::task_finished(to_task_state(co_await task_run.run()));
            // The lock goes when this coroutine ends, after every write to the task.
        },
        [this](std::exception_ptr) { --in_flight_; });
}

}  // namespace iea::pipeline
