test_that("score_job runs a real job, streams progress and returns its result", {
  job <- make_job()
  expect_message(result <- score_job(job$job), "task t0000[0-2] done: .* rows")
  expect_s3_class(result, "serverless_score_result")
  expect_equal(result$status, "succeeded")
  expect_equal(result$rows_out, 600)
  expect_equal(result$tasks, 3)
  expect_true(file.exists(result$output))
  expect_true(result$timings$total_s > 0)

  scores <- read_scores(result)
  expect_equal(names(scores), c("id", "prediction"))
  expect_identical(scores$id, job$rows$id)  # text ids, leading zeros kept
  rows <- job$rows
  rows$group <- factor(rows$group, levels = job$model$xlevels$group)
  expected <- unname(predict(job$model, rows, type = "response"))
  expect_equal(scores$prediction, expected, tolerance = 1e-12)

  again <- score_job(job$job, quiet = TRUE)  # same job, same input: nothing to redo
  expect_equal(again$status, "up-to-date")
})

test_that("submit_job, job_status and wait_job follow a job; overrides become --set", {
  job <- make_job()
  handle <- score_job(job$job, wait = FALSE, chunks = 2)
  expect_s3_class(handle, "serverless_score_job")
  expect_true(job_status(handle)$status %in% c("running", "succeeded"))
  result <- wait_job(handle, quiet = TRUE)
  expect_equal(result$status, "succeeded")
  expect_equal(result$tasks, 2)  # chunks = 2 reached the CLI as --set chunks=2
  status <- job_status(handle)
  expect_equal(status$status, "succeeded")
  expect_equal(status$rows_out, 600)
  expect_equal(nrow(read_scores(handle)), 600)
  # backend = "aci" reached the CLI as --set backend="aci": its own check refuses the local job
  expect_error(score_job(job$job, backend = "aci", quiet = TRUE),
               'backend "aci"', fixed = TRUE, class = "serverless_score_job_error")
})

test_that("a failing job shows the failing task and its log tail", {
  job <- make_job(scorer = "score.R")
  writeLines("score <- function(model, data) stop('no coefficients for this region')",
             file.path(job$dir, "score.R"))
  err <- tryCatch(score_job(job$job, quiet = TRUE), error = function(e) e)
  expect_s3_class(err, "serverless_score_job_error")
  expect_match(conditionMessage(err), "R error in score\\(model, data\\): no coefficients for this region")
  expect_match(conditionMessage(err), "-- last lines of the log of task t0000[0-2] --")
  expect_match(err$task_id, "^t0000[0-2]$")
  expect_equal(err$result$status, "failed")
  expect_output(print(err$result), "job testthat-job-[0-9a-f]+ failed: task t0000[0-2]")
  expect_error(read_scores(err$result), "job testthat-job-[0-9a-f]+ has no scores: it failed")
  expect_error(read_scores(job$job), "job testthat-job-[0-9a-f]+ has no scores at .*: it is failed")
  expect_match(job_logs(job$job, task = err$task_id), "no coefficients for this region")
})

test_that("a missing CLI says how to install it", {
  job <- make_job()
  old <- options(serveRless.cli = file.path(tempdir(), "no-such-serverless-score"))
  on.exit(options(old))
  expect_error(score_job(job$job), "pip install serverless-score", class = "serverless_score_cli_missing")
  expect_error(find_cli(), "options\\(serveRless.cli\\)")
})

test_that("a missing job file is named", {
  expect_error(score_job(file.path(tempdir(), "nope.toml")), "job file '.*nope.toml' does not exist")
})

test_that("a result with rows left out says how many and where they are listed", {
  result <- structure(list(status = "succeeded", rows_out = 997, tasks = 1, output = "out/s.csv",
                           timings = list(total_s = 2.5), rows_failed = 3,
                           errors = "out/s.csv.errors.csv"),
                      class = "serverless_score_result")
  expect_output(print(result), "997 rows from 1 task in 2.5s -> out/s.csv; 3 rows failed and were left out \\(see out/s.csv.errors.csv\\)")
  result$rows_failed <- 0
  expect_false(grepl("failed", paste(capture.output(print(result)), collapse = "")))
})
