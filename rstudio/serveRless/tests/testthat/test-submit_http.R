# submit_http() against a stand-in trigger speaking the asynchronous Response protocol (a small
# Python server); the real templates behind a real trigger: tests/r/test_submit_http_e2e.py.
python <- Sys.which(c("python3", "python"))
python <- python[nzchar(python)][1]

start_stub <- function() {
  stub <- processx::process$new(python, test_path("logic_app_stub.py"), stdout = "|",
                                stderr = "|", cleanup = TRUE)
  port <- stub$read_output_lines()
  while (!length(port) && stub$is_alive()) {
    stub$poll_io(2000)
    port <- stub$read_output_lines()
  }
  list(process = stub, base = sprintf("http://127.0.0.1:%s", port[1]))
}

test_that("submit_http posts the overrides, polls Location and returns the result", {
  skip_if_not_installed("curl")
  stub <- start_stub()
  on.exit(stub$process$kill(), add = TRUE)
  url <- paste0(stub$base, "/invoke?sig=SECRET")
  result <- submit_http(url, output = "az://scores/x.csv", date = as.Date("2026-11-01"),
                        chunks = 8, resources.cpu = 2, poll = 0.1)
  expect_s3_class(result, "serverless_score_result")
  expect_equal(result$status, "succeeded")
  expect_equal(result$job_id, "job-1")
  expect_equal(result$output, "az://scores/x.csv")
  expect_equal(result$rows_out, 25)
  sent <- jsonlite::fromJSON(rawToChar(curl::curl_fetch_memory(
    paste0(stub$base, "/requests"))$content), simplifyVector = FALSE)[[1]]
  expect_equal(sent, list(output = "az://scores/x.csv", date = "2026-11-01",
                          set = list(chunks = 8, resources.cpu = 2)))
  expect_output(print(result), "succeeded: 25 rows -> az://scores/x.csv")
})

test_that("a failed run is a serverless_score_job_error with the workflow's reason", {
  skip_if_not_installed("curl")
  stub <- start_stub()
  on.exit(stub$process$kill(), add = TRUE)
  err <- tryCatch(submit_http(paste0(stub$base, "/invoke?sig=SECRET"), input = "fail", poll = 0.1),
                  error = identity)
  expect_s3_class(err, "serverless_score_job_error")
  expect_match(conditionMessage(err), "task t00001 failed: boom")
  expect_equal(err$result$http_status, 500L)
})

test_that("wait = FALSE gives a handle for job_status() and wait_job(); the signature stays hidden", {
  skip_if_not_installed("curl")
  stub <- start_stub()
  on.exit(stub$process$kill(), add = TRUE)
  handle <- submit_http(paste0(stub$base, "/invoke?sig=SECRET"), wait = FALSE)
  expect_equal(job_status(handle)$status, "running")  # the first poll answers 202
  expect_false(grepl("SECRET", paste(capture.output(print(handle)), collapse = "")))
  result <- wait_job(handle, poll = 0.1)
  expect_equal(result$status, "succeeded")
  expect_equal(job_status(handle)$status, "succeeded")
})

test_that("unnamed overrides and an unreachable trigger are clear errors", {
  skip_if_not_installed("curl")
  expect_error(submit_http("http://127.0.0.1:9/invoke", input = "az://d/x.csv", output = "az://s/y.csv",
                           model = "az://m/m.rds", date = "2026-11-01", 8), "must be named")
  expect_error(submit_http("http://127.0.0.1:9/invoke?sig=SECRET"), "cannot reach the Logic App at http://127.0.0.1:9/invoke\\?\\.\\.\\.")
})
