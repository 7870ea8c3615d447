-- wrk script: POST the same webhook body with a fixed X-Signature.
-- BODY_FILE and SIGNATURE come from the environment (see run.sh).
local file = io.open(os.getenv("BODY_FILE"), "rb")
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Signature"] = os.getenv("SIGNATURE")
