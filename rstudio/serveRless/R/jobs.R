# Launching and watching jobs. A job handle says how it was launched (`via`): "cli" runs the
# serverless-score command line on this machine; the cloud backends are picked by the job's
# `backend` (or `backend =` here) and still go through the CLI, and an HTTP trigger can be added
# as another `via` with the same job_status() / wait_job() contract.

#' Run a scoring job and return its result.
#'
#' @param job Path of the job file (TOML).
#' @param backend Where to run: NULL for the job file's own `backend`, or "local" (later "docker",
#'   "aci").
#' @param wait TRUE to wait for the end (progress streams to the console), FALSE to return a job
#'   handle at once (see [submit_job()]).
#' @param ... Job keys to override, e.g. `chunks = 8, max_parallel = 4` (`--set key=value`).
#' @param quiet TRUE to not echo progress.
#' @return A list of class `serverless_score_result`: `status`, `rows_in`, `rows_out`, `output`,
#'   `manifest`, `timings`, `job_id`, ... On failure an error of class
#'   `serverless_score_job_error` whose message has the failing task and the end of its log.
#' @export
score_job <- function(job = "score.toml", backend = NULL, wait = TRUE, ..., quiet = FALSE) {
  handle <- submit_job(job, backend = backend, ...)
  if (!wait) return(handle)
  # Leaving early (Esc, Ctrl-C, an error) stops the job: the CLI then deletes its workers.
  on.exit(stop_job(handle), add = TRUE)
  wait_job(handle, quiet = quiet)
}

#' Start a scoring job without waiting for it.
#'
#' @inheritParams score_job
#' @return A job handle (class `serverless_score_job`) for [job_status()] and [wait_job()].
#' @export
submit_job <- function(job = "score.toml", backend = NULL, ...) {
  if (!file.exists(job)) {
    stop(serveRless_error(sprintf("job file '%s' does not exist (working directory: %s)",
                                  job, getwd())))
  }
  cli <- find_cli()
  overrides <- list(...)
  if (!is.null(backend)) overrides$backend <- backend
  args <- c("run", normalizePath(job), "--json", override_args(overrides))
  logs <- tempfile("serverless-score-")
  process <- processx::process$new(cli, args, stdout = paste0(logs, ".out"),
                                   stderr = paste0(logs, ".err"), env = cli_env(),
                                   cleanup = TRUE)
  structure(class = "serverless_score_job", list(
    via = "cli", job = normalizePath(job), cli = cli, args = args, process = process,
    stdout = paste0(logs, ".out"), stderr = paste0(logs, ".err"), started = Sys.time(),
    shown = new.env()))
}

#' Where a job is: running (with its progress so far) or finished (with its result).
#'
#' @param handle A handle from [submit_job()].
#' @return A list: `status` ("running", "succeeded", "up-to-date", "failed", "interrupted"),
#'   `tasks_done`, `tasks_total`, `rows` while running; the full result once finished.
#' @export
job_status <- function(handle) {
  check_handle(handle)
  if (identical(handle$via, "http")) return(http_job_status(handle))
  if (handle$process$is_alive()) {
    progress <- progress_of(read_lines(handle$stderr))
    return(c(list(status = "running", job = handle$job,
                  elapsed_s = as.numeric(difftime(Sys.time(), handle$started, units = "secs"))),
             progress))
  }
  finished_result(handle)
}

#' Wait for a job, echoing its progress; its result, or an error saying what failed.
#'
#' @param handle A handle from [submit_job()].
#' @param quiet TRUE to not echo progress.
#' @param poll Seconds between looks at the job.
#' @param timeout Seconds to wait at most (jobs submitted with [submit_http()]).
#' @export
wait_job <- function(handle, quiet = FALSE, poll = 0.2, timeout = 6 * 3600) {
  check_handle(handle)
  if (identical(handle$via, "http")) return(http_wait(handle, poll = max(poll, 1), timeout = timeout))
  repeat {
    alive <- handle$process$is_alive()
    if (!quiet) echo_new_lines(handle)
    if (!alive) break
    Sys.sleep(poll)
  }
  result <- finished_result(handle)
  if (!result$status %in% c("succeeded", "up-to-date")) stop(job_failed(result))
  result  # the CLI already printed its summary with the progress
}

stop_job <- function(handle) {
  if (handle$process$is_alive()) {
    handle$process$interrupt()  # like Ctrl-C in a terminal: the CLI stops and deletes workers
    handle$process$wait(15000)
    if (handle$process$is_alive()) handle$process$kill()
  }
}

check_handle <- function(handle) {
  if (!inherits(handle, "serverless_score_job")) {
    stop(serveRless_error("expected a job handle from submit_job() or score_job(wait = FALSE)"))
  }
  if (!handle$via %in% c("cli", "http")) {
    stop(serveRless_error(sprintf("job handles via '%s' are not supported by this version",
                                  handle$via)))
  }
}

read_lines <- function(path) {
  if (!file.exists(path)) return(character(0))
  readLines(path, warn = FALSE, encoding = "UTF-8")
}

echo_new_lines <- function(handle) {
  lines <- read_lines(handle$stderr)
  shown <- if (is.null(handle$shown$n)) 0L else handle$shown$n
  complete <- length(lines)
  if (handle$process$is_alive()) complete <- complete - 1L  # the last line may be half written
  if (complete > shown) {
    for (line in lines[(shown + 1L):complete]) if (nzchar(trimws(line))) message(line)
    handle$shown$n <- complete
  }
}

# "task t00001 done: 50,002 rows in 0.5s (2/4 tasks, 100,000 rows)" -> counts so far.
progress_of <- function(lines) {
  done <- grep("^task \\S+ done: .*\\((\\d+)/(\\d+) tasks, ([0-9,]+) rows\\)", lines, value = TRUE)
  if (!length(done)) return(list(tasks_done = 0L, tasks_total = NA_integer_, rows = 0))
  last <- regmatches(done[length(done)],
                     regexec("\\((\\d+)/(\\d+) tasks, ([0-9,]+) rows\\)", done[length(done)]))[[1L]]
  list(tasks_done = as.integer(last[2L]), tasks_total = as.integer(last[3L]),
       rows = as.numeric(gsub(",", "", last[4L], fixed = TRUE)))
}

finished_result <- function(handle) {
  handle$process$wait()
  stdout <- paste(read_lines(handle$stdout), collapse = "\n")
  result <- parse_result(stdout)
  if (is.null(result)) {
    tail <- paste(utils::tail(read_lines(handle$stderr), 20L), collapse = "\n")
    stop(serveRless_error(sprintf(
      "serverless-score exited with code %s without a result:\n%s",
      handle$process$get_exit_status(), tail)))
  }
  result$exit_code <- handle$process$get_exit_status()
  structure(result, class = "serverless_score_result")
}

job_failed <- function(result) {
  err <- result$error
  message <- sprintf("scoring job %s %s: %s", if (is.null(result$job_id)) "" else result$job_id,
                     result$status, err$message)
  if (!is.null(err$task_id)) {
    message <- paste0(message, "\n-- last lines of the log of task ", err$task_id, " --\n",
                      err$log_tail)
  }
  if (!is.null(err$hint) && nzchar(err$hint)) message <- paste0(message, "\nhint: ", err$hint)
  serveRless_error(message, class = "serverless_score_job_error", result = result,
                   task_id = err$task_id)
}

summary_line <- function(result) {
  if (!is.null(result$run_id)) {  # from a Logic App (submit_http)
    return(sprintf("%s: %s rows -> %s (job %s, Logic App run %s)", result$status,
                   format(if (is.null(result$rows_out)) NA else result$rows_out, big.mark = ","),
                   if (is.null(result$output)) "?" else result$output,
                   if (is.null(result$job_id)) "?" else result$job_id, result$run_id))
  }
  if (identical(result$status, "up-to-date")) {
    return(sprintf("up to date: %s was already written by this job (%s rows)", result$output,
                   format(result$rows_out, big.mark = ",")))
  }
  sprintf("%s: %s rows from %s tasks in %.1fs -> %s", result$status,
          format(result$rows_out, big.mark = ","), result$tasks,
          if (is.null(result$timings$total_s)) NA_real_ else result$timings$total_s, result$output)
}

#' @export
print.serverless_score_result <- function(x, ...) {
  cat("<serverless-score result>", summary_line(x), "\n")
  invisible(x)
}

#' @export
print.serverless_score_job <- function(x, ...) {
  if (identical(x$via, "http")) {
    cat(sprintf("<serverless-score job> via Logic App %s (started %s)\n", x$job,
                format(x$started, "%H:%M:%S")))
    return(invisible(x))
  }
  state <- if (x$process$is_alive()) "running" else "finished"
  cat(sprintf("<serverless-score job> %s (%s, started %s)\n", x$job, state,
              format(x$started, "%H:%M:%S")))
  invisible(x)
}
