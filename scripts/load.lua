-- wrk script for scripts/load: `LOAD_ADMIN_SECRET=... wrk ... -s scripts/load.lua URL -- KIND`.
-- Each wrk process sends one kind of request, rotating through that kind's variants, checks
-- every answer (status and body) and prints one `RESULT` line that scripts/load reads.

local endpoint = "/v1alpha1/pg_dump"
local secret_header = "x-hasura-admin-secret"

-- kind -> expected status, accepted bodies (Lua patterns), variants. A variant is a body and
-- extra headers; it carries the right admin secret unless `secret = false`.
local kinds = {
  dump = {
    status = 200,
    bodies = { "CREATE TABLE public.articles", "INSERT INTO public.authors", "^PGDMP", "^\31\139" },
    variants = {
      { body = '{"opts":["-O","-x","--schema-only","--schema","public"],"clean_output":true}' },
      { body = '{"opts":["--data-only","--column-inserts","--table","public.authors"]}' },
      { body = '{"opts":["-Fc","--schema","public"]}' },
      { body = '{"opts":["-O","-x","--schema-only"],"clean_output":true}',
        headers = { ["Accept-Encoding"] = "gzip" } },
    },
  },
  bad_json = {
    status = 400,
    bodies = { '"code":"invalid%-json"', '"code":"parse%-failed"' },
    variants = {
      { body = '{"opts": [' },
      { body = 'opts=-O' },
      { body = '' },
      { body = '{"opts": "-O"}' },
      { body = '{"opts": ["-O", 1]}' },
      { body = '{"clean_output": true}' },
      { body = '{"opts": [], "source": ""}' },
    },
  },
  wrong_secret = {
    status = 401,
    bodies = { '"code":"access%-denied"' },
    variants = {
      { body = '{"opts":[]}', secret = false, headers = { [secret_header] = "wrong" } },
      { body = '{"opts":[]}', secret = false, headers = { [secret_header] = "" } },
      { body = '{"opts":[]}', secret = false },
      { body = '{"opts":[]}', secret = false, headers = { ["x-hasura-access-key"] = "wrong" } },
    },
  },
  forbidden_option = {
    status = 400,
    bodies = { '"code":"invalid%-params"' },
    variants = {
      { body = '{"opts":["-f","/tmp/pgdump-api-load"]}' },
      { body = '{"opts":["-O","--file=/tmp/pgdump-api-load"]}' },
      { body = '{"opts":["-d","postgres"]}' },
      { body = '{"opts":["-Fd"]}' },
      { body = '{"opts":["-j","4"]}' },
      { body = '{"opts":["--role=postgres"]}' },
      { body = '{"opts":["-hlocalhost"]}' },
      { body = '{"opts":["mydb"]}' },
      { body = '{"opts":["-E","LATIN1"]}' },
      { body = '{"opts":["-Fc"],"clean_output":true}' },
    },
  },
}

-- Thread side -------------------------------------------------------------------------------

local spec, requests, next_variant
counts = {}      -- status -> count, read by done()
unexpected = 0   -- answers with another status or body than the kind's
kind = nil

function init(args)
  kind = args[1]
  spec = kinds[kind]
  if spec == nil then
    error("unknown kind " .. tostring(kind))
  end
  -- Build every variant's raw request once.
  requests = {}
  for i, v in ipairs(spec.variants) do
    local headers = { ["Content-Type"] = "application/json" }
    if v.secret ~= false then headers[secret_header] = os.getenv("LOAD_ADMIN_SECRET") end
    for name, value in pairs(v.headers or {}) do headers[name] = value end
    requests[i] = wrk.format("POST", endpoint, headers, v.body)
  end
  next_variant = 0
end

function request()
  next_variant = next_variant % #requests + 1
  return requests[next_variant]
end

local function accepted(body)
  for _, pattern in ipairs(spec.bodies) do
    if string.find(body, pattern) then return true end
  end
  return false
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
  if status ~= spec.status or not accepted(body or "") then
    unexpected = unexpected + 1
  end
end

-- Main side ---------------------------------------------------------------------------------

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, _)
  local statuses, bad, name = {}, 0, "?"
  for _, thread in ipairs(threads) do
    name = thread:get("kind")
    bad = bad + thread:get("unexpected")
    for status, n in pairs(thread:get("counts")) do
      statuses[status] = (statuses[status] or 0) + n
    end
  end
  local list = {}
  for status, n in pairs(statuses) do table.insert(list, status .. ":" .. n) end
  table.sort(list)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    "RESULT kind=%s requests=%d seconds=%.2f rps=%.1f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f " ..
    "max_ms=%.2f socket_errors=%d timeouts=%d unexpected=%d statuses=%s\n",
    name, summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    e.connect + e.read + e.write, e.timeout, bad, table.concat(list, ",")))
end
