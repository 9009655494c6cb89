# Jobs run by a Logic App's HTTP trigger (README: Logic App templates). The workflow answers
# asynchronously: the POST gets 202 Accepted and a Location to poll; the poll answers 202 until
# the job is over, then the workflow's response (200 with the result, 500 with the reason).

#' Run a scoring job through a Logic App's HTTP trigger.
#'
#' @param url The trigger's callback URL (the `triggerUrl` output of the deployment). It carries
#'   a signature: treat it like a password.
#' @param input,output,model Blob URIs replacing the job's own for this run (NULL: keep them).
#' @param date `"YYYY-MM-DD"` (or a Date) replacing `{date}` in the job's URIs (default: today,
#'   UTC, decided by the workflow).
#' @param ... Other job keys to override, e.g. `chunks = 8`, `resources.cpu = 2`.
#' @param wait TRUE to wait for the job's end, FALSE to return a handle at once (see
#'   [job_status()], [wait_job()]).
#' @param timeout Seconds to wait at most.
#' @param poll Seconds between looks when the service does not say (`Retry-After`).
#' @return A list of class `serverless_score_result`: `status` ("succeeded"), `job_id`, `output`,
#'   `manifest`, `rows_out`, `run_id`, `container_group`. A failed job is an error of class
#'   `serverless_score_job_error` with the workflow's reason (`err$result` has the whole answer).
#' @export
submit_http <- function(url, input = NULL, output = NULL, model = NULL, date = NULL, ...,
                        wait = TRUE, timeout = 6 * 3600, poll = 5) {
  if (!requireNamespace("curl", quietly = TRUE)) {
    stop(serveRless_error(paste("submit_http() needs the curl package:",
                                "install.packages(\"curl\") (Debian: apt-get install r-cran-curl)")))
  }
  if (inherits(date, "Date")) date <- format(date, "%Y-%m-%d")
  body <- Filter(Negate(is.null), list(input = input, output = output, model = model, date = date))
  overrides <- list(...)
  if (length(overrides)) {
    if (is.null(names(overrides)) || any(!nzchar(names(overrides)))) {
      stop(serveRless_error("job overrides in ... must be named, e.g. chunks = 8"))
    }
    body$set <- overrides
  }
  json <- if (length(body)) jsonlite::toJSON(body, auto_unbox = TRUE) else "{}"
  reply <- http_request(url, "POST", json)
  handle <- structure(class = "serverless_score_job", list(
    via = "http", job = redact_url(url), location = NULL, started = Sys.time(),
    reply = new.env()))
  if (reply$status_code == 202L && !is.null(reply$location)) {
    handle$location <- reply$location
    handle$reply$retry_after <- reply$retry_after
  } else {
    handle$reply$final <- reply
  }
  if (!wait) return(handle)
  wait_job(handle, poll = poll, timeout = timeout)
}

http_request <- function(url, method, body = NULL) {
  h <- curl::new_handle()
  curl::handle_setheaders(h, "Content-Type" = "application/json", Accept = "application/json")
  if (identical(method, "POST")) {
    curl::handle_setopt(h, customrequest = "POST", postfields = as.character(body))
  }
  reply <- tryCatch(curl::curl_fetch_memory(url, handle = h), error = function(e) {
    stop(serveRless_error(sprintf("cannot reach the Logic App at %s: %s", redact_url(url),
                                  conditionMessage(e))))
  })
  headers <- curl::parse_headers_list(reply$headers)
  retry <- suppressWarnings(as.numeric(headers[["retry-after"]]))
  list(status_code = as.integer(reply$status_code), location = headers[["location"]],
       retry_after = if (length(retry) && !is.na(retry)) retry else NULL,
       text = rawToChar(reply$content))
}

# The callback URL's query string holds its signature (sig=...): never print it.
redact_url <- function(url) sub("\\?.*$", "?...", url)

http_job_status <- function(handle) {
  if (is.null(handle$reply$final)) {
    reply <- http_request(handle$location, "GET")
    if (reply$status_code == 202L) {
      if (!is.null(reply$location)) handle$location <- reply$location
      handle$reply$retry_after <- reply$retry_after
      return(list(status = "running", job = handle$job,
                  elapsed_s = as.numeric(difftime(Sys.time(), handle$started, units = "secs"))))
    }
    handle$reply$final <- reply
  }
  http_result(handle$reply$final)
}

http_wait <- function(handle, poll, timeout) {
  deadline <- Sys.time() + timeout
  repeat {
    state <- http_job_status(handle)
    if (!identical(state$status, "running")) break
    if (Sys.time() > deadline) {
      stop(serveRless_error(sprintf("the Logic App run did not answer within %s s; poll again with wait_job()",
                                    timeout)))
    }
    Sys.sleep(if (is.null(handle$reply$retry_after)) poll else handle$reply$retry_after)
  }
  if (!identical(state$status, "succeeded")) stop(job_failed(state))
  state
}

http_result <- function(reply) {
  answer <- tryCatch(jsonlite::fromJSON(reply$text, simplifyVector = FALSE),
                     error = function(e) NULL)
  if (!is.list(answer)) {
    stop(serveRless_error(sprintf("the Logic App answered HTTP %d without a JSON result: %s",
                                  reply$status_code, substr(reply$text, 1L, 300L))))
  }
  status <- tolower(if (is.null(answer$status)) "failed" else answer$status)
  if (reply$status_code >= 400L) status <- "failed"
  message <- answer$error
  if (is.list(message)) message <- if (is.null(message$message)) "" else message$message
  structure(class = "serverless_score_result", list(
    status = status, job_id = answer$jobId, output = answer$output, manifest = answer$manifest,
    rows_out = answer$rowsOut, run_id = answer$runId, container_group = answer$containerGroup,
    http_status = reply$status_code,
    error = if (identical(status, "succeeded")) NULL else list(message = if (is.null(message))
      sprintf("HTTP %d", reply$status_code) else message),
    response = answer))
}
