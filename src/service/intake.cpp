#include "iea/service/intake.hpp"

#include <nlohmann/json.hpp>

#include "iea/metrics/metrics.hpp"
#include "iea/webhook/event.hpp"
#include "iea/webhook/signature.hpp"

namespace iea::service {
namespace {

http::Response answer(http::Status code, std::string_view status, const std::string& task_id,
                      std::string_view key, std::string_view text) {
    nlohmann::json body{{"status", status}};
    if (!task_id.empty()) body["task_id"] = task_id;
    if (!key.empty()) body[std::string(key)] = text;
    return http::json_response(code, body);
}

std::string_view verification_problem(webhook::Verification outcome) {
    switch (outcome) {
        case webhook::Verification::kMissing:
            return "missing";
        case webhook::Verification::kMalformed:
            return "malformed";
        default:
            return "mismatch";
    }
}

}  // namespace

WebhookIntake::WebhookIntake(IntakeOptions options,
                             locking::TaskLocks& locks,
                             locking::DeliveryLog& deliveries,
                             TaskRunner& runner)
    : options_(std::move(options)), locks_(locks), deliveries_(deliveries), runner_(runner) {}

boost::asio::awaitable<http::Response> WebhookIntake::handle(const http::Request& request) {
    // 0. During a shutdown nothing new is taken: ClickUp retries a 503, so the tick reaches
    // the next instance or this one after its restart instead of being lost.
    if (stopping_) {
        static const auto unavailable = [] {
            auto response = http::error_response(http::Status::service_unavailable,
                                                 "the service is restarting; send it again");
            response.set(boost::beast::http::field::retry_after, "30");
            return response;
        }();
        metrics::webhook_answered(metrics::WebhookOutcome::kUnavailable);
        co_return unavailable;
    }

    // 1. Authenticity first: nothing of an unsigned body is parsed.
    const std::string_view signature = request["X-Signature"];
    const auto outcome =
        webhook::verify_signature(options_.webhook_secret, request.body(), signature);
    if (outcome != webhook::Verification::kValid) {
        note_rejected_signature(verification_problem(outcome));
        metrics::webhook_answered(metrics::WebhookOutcome::kRejectedSignature);
        // Forged webhooks can flood: the answer is prepared once.
        static const auto rejected =
            http::error_response(http::Status::unauthorized, "invalid signature");
        co_return rejected;
    }

    // A redelivery carries the very same bytes: once such a body was taken, its repeats are
    // answered without parsing it again (ClickUp retries come in bursts).
    std::string signature_key(signature);
    for (auto& c : signature_key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (deliveries_.knows_body(signature_key)) {
        log_.debug("Webhook redelivered", {{"bytes", request.body().size()}});
        metrics::webhook_answered(metrics::WebhookOutcome::kAlreadyProcessing);
        static const auto repeated = http::json_response(
            http::Status::ok,
            {{"status", "already_processing"}, {"message", "this delivery was already received"}});
        co_return repeated;
    }

    // 2. Shape.
    const auto parsed = webhook::parse_event(request.body());
    if (!parsed.event) {
        log_.warning("Webhook rejected", {{"reason", parsed.error}});
        metrics::webhook_answered(metrics::WebhookOutcome::kBadRequest);
        co_return answer(http::Status::bad_request, "failed", {}, "error", parsed.error);
    }
    const auto& event = *parsed.event;

    // 3. Only a tick of the AI-edit checkbox starts work.
    const auto trigger = webhook::classify(event, options_.ai_edit_field_id);
    if (!trigger.start) {
        log_.debug("Webhook ignored", {{"task_id", event.task_id}, {"reason", trigger.reason}});
        metrics::webhook_answered(metrics::WebhookOutcome::kIgnored);
        co_return answer(http::Status::ok, "ignored", event.task_id, "reason", trigger.reason);
    }

    // 4. A redelivery of a tick we already took is answered without touching the lock.
    deliveries_.remember_body(signature_key);
    if (!deliveries_.record(trigger.delivery_id)) {
        // ClickUp retries can arrive in bursts; they are normal, so they stay out of info logs.
        log_.debug("Webhook redelivered",
                  {{"task_id", event.task_id}, {"delivery_id", trigger.delivery_id}});
        metrics::webhook_answered(metrics::WebhookOutcome::kAlreadyProcessing);
        co_return answer(http::Status::ok, "already_processing", event.task_id, "message",
                         "this delivery was already received");
    }

    // 5. One run per task.
    auto lock = locks_.try_acquire(event.task_id);
    if (!lock) co_return already_running(event.task_id);

    // 6. Recorded in the journal before the answer: from here on a restart cannot lose it.
    TaskJob job{event.task_id, trigger.delivery_id, std::chrono::system_clock::now()};
    const auto admission =
        co_await runner_.admit(std::move(job), std::move(*lock), options_.answer_when_done);
    switch (admission.kind) {
        case Admission::Kind::kRedelivered:
            metrics::webhook_answered(metrics::WebhookOutcome::kAlreadyProcessing);
            log_.debug("Webhook redelivered",
                       {{"task_id", event.task_id}, {"delivery_id", trigger.delivery_id}});
            co_return answer(http::Status::ok, "already_processing", event.task_id, "message",
                             "this delivery was already received");
        case Admission::Kind::kBusy:
            co_return already_running(event.task_id);
        case Admission::Kind::kUnavailable: {
            deliveries_.forget(trigger.delivery_id, signature_key);
            metrics::webhook_answered(metrics::WebhookOutcome::kUnavailable);
            auto response = answer(http::Status::service_unavailable, "unavailable",
                                   event.task_id, "error",
                                   "the edit could not be recorded; send it again");
            response.set(boost::beast::http::field::retry_after, "30");
            co_return response;
        }
        case Admission::Kind::kAccepted:
            break;
    }
    log_.info("Webhook accepted",
              {{"task_id", event.task_id}, {"delivery_id", trigger.delivery_id},
               {"bytes", request.body().size()}});
    metrics::webhook_answered(metrics::WebhookOutcome::kAccepted);
    if (options_.answer_when_done) {
        co_return answer(http::Status::ok, "done", event.task_id, "ending", admission.ending);
    }
    co_return answer(http::Status::accepted, "accepted", event.task_id, "message",
                     "edit queued");
}

http::Response WebhookIntake::already_running(const std::string& task_id) {
    log_.info("Task already processing", {{"task_id", task_id}});
    metrics::webhook_answered(metrics::WebhookOutcome::kAlreadyProcessing);
    return answer(http::Status::ok, "already_processing", task_id, "message",
                  "an edit of this task is already running");
}

void WebhookIntake::note_rejected_signature(std::string_view why) {
    ++rejected_since_log_;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_rejection_log_ < std::chrono::seconds(1)) return;
    log_.warning("Webhook signature rejected",
                 {{"signature", why}, {"count", rejected_since_log_}});
    rejected_since_log_ = 0;
    last_rejection_log_ = now;
}

}  // namespace iea::service
