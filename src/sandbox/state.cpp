// Tasks, files, scenario and fault rules: the sandbox's in-memory world.

#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "sandbox/sandbox.hpp"
#include "sandbox/util.hpp"

namespace iea::sandbox {
namespace {

constexpr std::string_view kListId = "901200000001";
constexpr std::string_view kFolderId = "901100000001";
constexpr std::string_view kSpaceId = "901000000001";

json status_object(const std::string& name) {
    struct Look {
        const char* color;
        const char* type;
        int order;
    };
    static const std::map<std::string, Look> known = {
        {"to do", {"#d3d3d3", "open", 0}},
        {"in progress", {"#4194f6", "custom", 1}},
        {"needs human review", {"#f9d900", "custom", 2}},
        {"blocked", {"#e50000", "custom", 3}},
        {"complete", {"#6bc950", "closed", 4}},
    };
    const auto found = known.find(name);
    const Look look = found == known.end() ? Look{"#87909e", "custom", 5} : found->second;
    std::string slug = name;
    for (auto& c : slug) c = c == ' ' ? '_' : c;
    return {{"id", "sc" + std::string(kListId) + "_" + slug},
            {"status", name},
            {"color", look.color},
            {"orderindex", look.order},
            {"type", look.type}};
}

json user_object(bool by_service) {
    if (by_service) {
        return {{"id", 99000001},
                {"username", "image-edit-agent"},
                {"email", "agent@example.invalid"},
                {"color", "#000000"},
                {"initials", "IA"},
                {"profilePicture", nullptr}};
    }
    return {{"id", 81234567},
            {"username", "Sandbox Designer"},
            {"email", "designer@example.invalid"},
            {"color", "#7b68ee"},
            {"initials", "SD"},
            {"profilePicture", nullptr}};
}

std::string safe_title(std::string_view title) {
    std::string out;
    for (const char c : title) {
        const auto u = static_cast<unsigned char>(c);
        out += (c == '/' || c == '\\' || u < 0x20) ? '_' : c;
    }
    if (out.empty() || out == "." || out == "..") out = "file";
    return out;
}

int int_key(const json& spec, const char* key, int fallback) {
    if (!spec.contains(key)) return fallback;
    if (!spec.at(key).is_number_integer()) {
        throw std::invalid_argument(std::string(key) + " must be an integer");
    }
    return spec.at(key).get<int>();
}

void reject_unknown(const json& spec,
                    std::initializer_list<const char*> allowed,
                    const char* what) {
    if (!spec.is_object()) throw std::invalid_argument(std::string(what) + " must be an object");
    const std::set<std::string> names(allowed.begin(), allowed.end());
    for (const auto& [key, value] : spec.items()) {
        if (!names.contains(key)) {
            throw std::invalid_argument(std::string(what) + ": unknown key " + key);
        }
    }
}

VerdictRule parse_verdict(const json& spec) {
    reject_unknown(spec,
                   {"model", "iteration", "score", "pass", "issues", "reasoning", "style"},
                   "verdict rule");
    VerdictRule rule;
    rule.model = spec.value("model", rule.model);
    rule.iteration = int_key(spec, "iteration", 0);
    rule.score = spec.value("score", rule.score);
    rule.pass = spec.value("pass", rule.score >= 8);
    rule.issues = spec.value("issues", json::array());
    rule.reasoning = spec.value("reasoning", rule.reasoning);
    rule.style = spec.value("style", rule.style);
    if (rule.style != "bare" && rule.style != "fenced" && rule.style != "prose") {
        throw std::invalid_argument("verdict rule: style must be bare, fenced or prose");
    }
    return rule;
}

}  // namespace

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

json summarize_json(const json& value) {
    constexpr std::size_t kKeep = 48;
    if (value.is_string()) {
        const auto& text = value.get_ref<const std::string&>();
        if (text.starts_with("data:") && text.size() > 2 * kKeep) {
            return text.substr(0, kKeep) + "...[len=" + std::to_string(text.size()) + "]";
        }
        return value;
    }
    if (value.is_array() || value.is_object()) {
        json out = value;
        for (auto& item : out) item = summarize_json(item);
        return out;
    }
    return value;
}

FaultRule parse_fault(const json& spec) {
    reject_unknown(spec,
                   {"service",
                    "method",
                    "path",
                    "kind",
                    "times",
                    "status",
                    "retry_after",
                    "ratelimit_reset",
                    "ratelimit_reset_in",
                    "message",
                    "ecode",
                    "latency_ms"},
                   "fault");
    static const std::map<std::string, FaultKind> kinds = {
        {"status", FaultKind::kStatus},
        {"html_404", FaultKind::kHtml404},
        {"latency", FaultKind::kLatency},
        {"drop", FaultKind::kDrop},
        {"truncate", FaultKind::kTruncate},
        {"malformed_json", FaultKind::kMalformedJson},
        {"error_in_200", FaultKind::kErrorIn200},
        {"failed_prediction", FaultKind::kFailedPrediction},
        {"output_404", FaultKind::kOutput404},
        {"finish_length", FaultKind::kFinishLength},
        {"content_null", FaultKind::kContentNull},
    };
    FaultRule rule;
    rule.source = spec;
    rule.service = spec.value("service", "");
    if (!rule.service.empty() && rule.service != "clickup" && rule.service != "openrouter" &&
        rule.service != "wavespeed" && rule.service != "files") {
        throw std::invalid_argument(
            "fault: service must be clickup, openrouter, wavespeed or files");
    }
    rule.method = spec.value("method", "");
    for (auto& c : rule.method) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    rule.path = spec.value("path", "");
    try {
        rule.path_regex = std::regex(rule.path);
    } catch (const std::regex_error&) {
        throw std::invalid_argument("fault: path is not a valid regular expression");
    }
    const auto kind = kinds.find(spec.value("kind", "status"));
    if (kind == kinds.end()) throw std::invalid_argument("fault: unknown kind");
    rule.kind = kind->second;
    rule.times = int_key(spec, "times", -1);
    rule.status = int_key(spec, "status", rule.kind == FaultKind::kErrorIn200 ? 502 : 500);
    if (rule.status < 100 || rule.status > 599) throw std::invalid_argument("fault: bad status");
    if (spec.contains("retry_after")) rule.retry_after = int_key(spec, "retry_after", 0);
    if (spec.contains("ratelimit_reset")) {
        rule.ratelimit_reset = spec.at("ratelimit_reset").get<std::int64_t>();
    }
    if (spec.contains("ratelimit_reset_in")) {
        rule.ratelimit_reset = now_ms() / 1000 + int_key(spec, "ratelimit_reset_in", 0);
    }
    rule.message = spec.value("message", "");
    rule.latency_ms = int_key(spec, "latency_ms", 0);
    return rule;
}

Sandbox::Sandbox(asio::io_context& io, Options options)
    : io_(io), options_(std::move(options)), acceptor_(io), random_(std::random_device{}()) {
    webhook_id_ = uuid();
    std::filesystem::create_directories(options_.data_dir / "files");
    add_clickup_routes(router_);
    add_clickup_webhook_routes(router_);
    add_openrouter_routes(router_);
    add_wavespeed_routes(router_);
    add_file_routes(router_);
    add_admin_routes(router_);
}

Sandbox::~Sandbox() { workers_.join(); }

std::string Sandbox::uuid() {
    std::uniform_int_distribution<int> digit(0, 15);
    std::string out;
    for (const int group : {8, 4, 4, 4, 12}) {
        if (!out.empty()) out += '-';
        for (int i = 0; i < group; ++i) out += "0123456789abcdef"[digit(random_)];
    }
    return out;
}

std::string Sandbox::next_history_id() {
    // 19 digits, like ClickUp's history item ids.
    return std::to_string(4000000000000000000LL + next_counter_++);
}

std::string Sandbox::base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }

Task* Sandbox::find_task(std::string_view id) {
    const auto found = tasks_.find(std::string(id));
    return found == tasks_.end() ? nullptr : &found->second;
}

Attachment Sandbox::store_file(std::string_view title, std::string_view data, bool via_api) {
    Attachment attachment;
    const auto folder = uuid();
    attachment.title = safe_title(title);
    attachment.extension = extension_of(attachment.title);
    attachment.mimetype = mimetype_for(attachment.extension);
    attachment.id = folder + (attachment.extension.empty() ? "" : "." + attachment.extension);
    attachment.date = now_ms();
    attachment.size = data.size();
    attachment.via_api = via_api;

    const auto dir = options_.data_dir / "files" / folder;
    std::filesystem::create_directories(dir);
    std::ofstream out(dir / attachment.title, std::ios::binary);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    if (!out) throw std::runtime_error("sandbox: cannot write an uploaded file");

    const std::string path = "/files/" + folder + "/" + attachment.title;
    files_[path] = dir / attachment.title;
    attachment.url = base_url() + "/files/" + folder + "/" + url_encode(attachment.title);
    return attachment;
}

std::string Sandbox::file_path_for_url(std::string_view url) const {
    // Only this sandbox's own file host: anything else is never fetched.
    const auto own = base_url() + "/files/";
    if (!url.starts_with(own)) return {};
    const auto path = url_decode(url.substr(base_url().size()));
    const auto found = files_.find(path);
    return found == files_.end() ? std::string{} : found->second.string();
}

Task& Sandbox::create_task(const json& spec) {
    reject_unknown(spec, {"id", "name", "description", "status", "attachments", "ai_edit"}, "task");
    Task task;
    task.id = spec.value("id", "86sbx" + std::to_string(1000 + next_counter_++));
    if (task.id.empty() || task.id.find('/') != std::string::npos || find_task(task.id)) {
        throw std::invalid_argument("task: id is empty, has a slash or exists already");
    }
    task.name = spec.value("name", "Sandbox task");
    task.description = spec.value("description", "");
    task.status = lower(spec.value("status", "to do"));
    task.ai_edit = spec.value("ai_edit", false);
    task.created = task.updated = now_ms();
    for (const auto& item : spec.value("attachments", json::array())) {
        reject_unknown(item, {"file", "base64", "title"}, "attachment");
        std::string data;
        std::string title = item.value("title", "");
        if (item.contains("file")) {
            const std::filesystem::path path = item.at("file").get<std::string>();
            std::ifstream in(path, std::ios::binary);
            if (!in) throw std::invalid_argument("attachment: cannot read " + path.string());
            std::ostringstream bytes;
            bytes << in.rdbuf();
            data = bytes.str();
            if (title.empty()) title = path.filename().string();
        } else if (const auto decoded = base64_decode(item.value("base64", ""))) {
            data = *decoded;
        } else {
            throw std::invalid_argument("attachment: needs file or valid base64");
        }
        task.attachments.push_back(store_file(title.empty() ? "image.png" : title, data, false));
        task.attachments.back().date =
            task.created + static_cast<std::int64_t>(task.attachments.size());
    }
    task_order_.push_back(task.id);
    const auto id = task.id;
    return tasks_[id] = std::move(task);
}

json Sandbox::task_json(const Task& task) const {
    json attachments = json::array();
    for (const auto& a : task.attachments) {
        const bool image = a.mimetype.starts_with("image/");
        attachments.push_back({
            {"id", a.id},
            {"date", std::to_string(a.date)},
            {"title", a.title},
            {"type", 1},
            {"source", 1},
            {"version", 0},
            {"extension", a.extension},
            {"thumbnail_small", image ? json(a.url) : json(nullptr)},
            {"thumbnail_medium", image ? json(a.url) : json(nullptr)},
            {"thumbnail_large", image ? json(a.url) : json(nullptr)},
            {"is_folder", nullptr},
            {"mimetype", a.mimetype},
            {"hidden", false},
            {"parent_id", task.id},
            {"size", a.size},
            {"total_comments", 0},
            {"resolved_comments", 0},
            {"user", user_object(a.via_api)},
            {"deleted", false},
            {"orientation", nullptr},
            {"url", a.url},
            {"email_data", nullptr},
            {"url_w_query", a.url + "?view=open"},
            {"url_w_host", a.url},
        });
    }
    json field = {{"id", options_.field_id},
                  {"name", "AI edit"},
                  {"type", "checkbox"},
                  {"type_config", json::object()},
                  {"date_created", "1733142000000"},
                  {"hide_from_guests", false},
                  {"required", false}};
    if (task.ai_edit) field["value"] = "true";

    return {
        {"id", task.id},
        {"custom_id", nullptr},
        {"name", task.name},
        {"text_content", task.description},
        {"description", task.description},
        {"status", status_object(task.status)},
        {"orderindex", "1.00000000000000000000"},
        {"date_created", std::to_string(task.created)},
        {"date_updated", std::to_string(task.updated)},
        {"date_closed",
         task.status == "complete" ? json(std::to_string(task.updated)) : json(nullptr)},
        {"archived", false},
        {"creator", user_object(false)},
        {"assignees", json::array()},
        {"tags", json::array()},
        {"parent", nullptr},
        {"priority", nullptr},
        {"due_date", nullptr},
        {"url", "https://app.clickup.com/t/" + task.id},
        {"list", {{"id", kListId}, {"name", "Creative requests"}, {"access", true}}},
        {"folder", {{"id", kFolderId}, {"name", "Design"}, {"hidden", false}, {"access", true}}},
        {"space", {{"id", kSpaceId}}},
        {"custom_fields", json::array({field})},
        {"attachments", attachments},
    };
}

json Sandbox::admin_task_json(const Task& task) const {
    json out = task_json(task);
    json comments = json::array();
    for (const auto& c : task.comments) {
        comments.push_back({{"id", c.id},
                            {"hist_id", c.hist_id},
                            {"comment_text", c.text},
                            {"date", c.date},
                            {"notify_all", c.notify_all}});
    }
    out["comments"] = comments;
    out["ai_edit"] = task.ai_edit;
    out["status_changes"] = task.status_changes;
    out["field_changes"] = task.field_changes;
    for (std::size_t i = 0; i < task.attachments.size(); ++i) {
        out["attachments"][i]["uploaded_by_api"] = task.attachments[i].via_api;
    }
    return out;
}

void Sandbox::apply_scenario(const json& spec) {
    reject_unknown(spec,
                   {"verdicts",
                    "wavespeed_delay_ms",
                    "latency_ms",
                    "webhook_timeout_ms",
                    "webhook_retry_ms",
                    "webhook_max_retries",
                    "api_webhooks",
                    "faults",
                    "tasks"},
                   "scenario");
    // Validate everything before changing anything.
    Scenario next = scenario_;
    if (spec.contains("verdicts")) {
        next.verdicts.clear();
        for (const auto& rule : spec.at("verdicts")) next.verdicts.push_back(parse_verdict(rule));
    }
    next.wavespeed_delay_ms = int_key(spec, "wavespeed_delay_ms", next.wavespeed_delay_ms);
    next.latency_ms = int_key(spec, "latency_ms", next.latency_ms);
    next.webhook_timeout_ms = int_key(spec, "webhook_timeout_ms", next.webhook_timeout_ms);
    next.webhook_retry_ms = int_key(spec, "webhook_retry_ms", next.webhook_retry_ms);
    next.webhook_max_retries =
        std::clamp(int_key(spec, "webhook_max_retries", next.webhook_max_retries), 0, 5);
    next.api_webhooks = spec.value("api_webhooks", next.api_webhooks);
    std::vector<FaultRule> faults;
    for (const auto& fault : spec.value("faults", json::array()))
        faults.push_back(parse_fault(fault));

    scenario_ = std::move(next);
    for (auto& fault : faults) {
        fault.id = next_fault_id_++;
        faults_.push_back(std::move(fault));
    }
    for (const auto& task : spec.value("tasks", json::array())) create_task(task);
}

// TODO: files stay on disk under the data directory after a reset, and the request log grows
// without bound in a long demo run.
void Sandbox::reset() {
    scenario_ = Scenario{};
    tasks_.clear();
    task_order_.clear();
    files_.clear();
    predictions_.clear();
    faults_.clear();
    requests_.clear();
    deliveries_.clear();
    registered_webhooks_.clear();
    registered_order_.clear();
    if (!options_.scenario_file.empty()) {
        std::ifstream in(options_.scenario_file);
        if (!in) throw std::invalid_argument("cannot read scenario file " + options_.scenario_file);
        apply_scenario(json::parse(in));
    }
}

}  // namespace iea::sandbox
