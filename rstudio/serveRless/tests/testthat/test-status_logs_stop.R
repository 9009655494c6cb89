test_that("job_status and job_logs read a job file's stored state and task logs", {
  skip_without_cli()
  job <- make_job(scorer = "score.R", extra = "chunks = 2")
  writeLines(c("score <- function(model, data) {",
               "  message('scoring ', nrow(data), ' rows in this batch')",
               "  predict(model, data, type = 'response')",
               "}"), file.path(job$dir, "score.R"))
  result <- score_job(job$job, quiet = TRUE)
  status <- job_status(job$job)
  expect_equal(status$status, "succeeded")
  expect_equal(status$state, "succeeded")
  expect_equal(status$job_id, result$job_id)
  expect_equal(status$tasks_total, 2L)
  expect_equal(status$tasks_done, 2L)
  expect_equal(status$rows, 600)
  expect_equal(status$id_columns, "id")
  expect_equal(status$output_format, "csv")
  expect_s3_class(status$tasks, "data.frame")
  expect_equal(status$tasks$id, c("t00000", "t00001"))
  expect_equal(status$tasks$state, c("done", "done"))
  expect_equal(sum(status$tasks$rows), 600)

  logs <- job_logs(job$job)
  expect_type(logs, "character")
  expect_equal(names(logs), c("t00000", "t00001"))
  expect_true(all(grepl("scoring [0-9]+ rows in this batch", logs)))
  expect_equal(attr(logs, "attempt"), c(1L, 1L))
  one <- job_logs(job$job, task = 1)
  expect_equal(names(one), "t00001")
  expect_identical(as.vector(one), as.vector(logs["t00001"]))
  expect_error(job_logs(job$job, task = 7), "job testthat-job-[0-9a-f]+ has no task t00007")

  # The same through the output path, and the handle of a run with overrides (--set)
  expect_equal(job_status(result$output)$job_id, result$job_id)
  other <- file.path(job$dir, "other", "scores.csv")
  handle <- submit_job(job$job, output = other)
  wait_job(handle, quiet = TRUE)
  expect_equal(names(job_logs(handle)), c("t00000", "t00001"))
  expect_equal(job_status(job$job, output = other)$output, normalizePath(other))
  expect_equal(nrow(read_scores(job$job, output = other)), 600)
})

test_that("stop_job stops a running job: its workers go, nothing is written", {
  skip_without_cli()
  job <- make_job(scorer = "score.R", extra = c("chunks = 2", 'timeout = "5m"'))
  writeLines("score <- function(model, data) { Sys.sleep(120); predict(model, data) }",
             file.path(job$dir, "score.R"))
  handle <- submit_job(job$job)
  expect_true(wait_until(function() {
    file.exists(file.path(job$dir, "out", "scores.csv.work", "job.json")) &&
      identical(tryCatch(job_status(job$job)$tasks$state[1], error = function(e) NA), "running")
  }, timeout = 60))
  started <- Sys.time()
  result <- stop_job(handle)
  expect_lt(as.numeric(difftime(Sys.time(), started, units = "secs")), 15)  # not the 120 s sleep
  expect_false(handle$process$is_alive())
  expect_equal(result$status, "interrupted")
  expect_false(file.exists(file.path(job$dir, "out", "scores.csv")))
  status <- job_status(job$job)
  expect_equal(length(status$live_groups), 0L)
  expect_false(status$status %in% c("running", "succeeded"))
  expect_equal(stop_job(handle)$status, "interrupted")  # stopping a finished job is harmless
})

test_that("push_model keeps the command line's hint", {
  skip_without_cli()
  saved <- Sys.getenv(c("AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_CONNECTION_STRING"), unset = NA)
  Sys.unsetenv(names(saved))
  on.exit(if (any(!is.na(saved))) do.call(Sys.setenv, as.list(saved[!is.na(saved)])), add = TRUE)
  err <- tryCatch(push_model(lm(dist ~ speed, data = cars), "az://models/cars.rds"), error = identity)
  expect_s3_class(err, "serverless_score_error")
  expect_match(conditionMessage(err), "push_model: storing the model at 'az://models/cars.rds' failed: .*which storage account")
  expect_match(conditionMessage(err), "\nhint: Set \\[azure\\] storage_account in the job, or AZURE_STORAGE_ACCOUNT")
})
