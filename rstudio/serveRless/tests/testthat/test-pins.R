test_that("push_model writes pin versions and score_job scores model = \"pins://...\"", {
  skip_without_cli()
  job <- make_job()
  board <- file.path(job$dir, "board")
  first <- push_model(job$model, paste0("pins://", board, "/churn"))
  version <- attr(first, "version")
  expect_match(version, "^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{5}$")
  expect_equal(as.character(first), sprintf("pins://%s/churn@%s", normalizePath(board), version))
  folder <- file.path(board, "churn", version)
  expect_setequal(list.files(folder), c("churn.rds", "data.txt"))
  meta <- readLines(file.path(folder, "data.txt"))
  expect_true("type: rds" %in% meta)
  expect_true(sprintf("pin_hash: %s", attr(first, "pin_hash")) %in% meta)
  expect_error(push_model(job$model, "pins://az://models/board/churn"), "folder board",
               class = "serverless_score_error")

  result <- score_job(job$job, model = paste0("pins://", board, "/churn"), quiet = TRUE)
  expect_equal(result$status, "succeeded")
  expect_equal(result$model$source$version, version)
  expect_equal(result$model$source$uri, paste0("pins://", board, "/churn"))
  rows <- job$rows
  rows$group <- factor(rows$group, levels = job$model$xlevels$group)
  expected <- unname(predict(job$model, rows, type = "response"))
  expect_equal(read_scores(result)$prediction, expected, tolerance = 1e-12)

  # A board without the pin: the CLI's plan error, nothing scored.
  expect_error(score_job(job$job, model = paste0("pins://", board, "/nosuch"), quiet = TRUE),
               "has no pin named 'nosuch'", class = "serverless_score_job_error")
})
