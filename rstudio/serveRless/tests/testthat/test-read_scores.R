test_that("read_scores reads a job file's CSV output; ids stay exactly as written", {
  skip_without_cli()
  job <- make_job(ids = c("", "NA", "007"))
  expect_equal(score_job(job$job, quiet = TRUE)$status, "succeeded")
  scores <- read_scores(job$job)
  expect_identical(scores$id, job$rows$id)  # "" stays "", "NA" stays "NA", "007" keeps its zeros
  expect_identical(scores$id[1:3], c("", "NA", "007"))
  expect_false(anyNA(scores$id))
  expect_type(scores$prediction, "double")
  rows <- job$rows
  rows$group <- factor(rows$group, levels = job$model$xlevels$group)
  expect_equal(scores$prediction, unname(predict(job$model, rows, type = "response")),
               tolerance = 1e-12)
  expect_identical(read_scores(file.path(job$dir, "out", "scores.csv")), scores)  # by output path
})

# The R runtime writes CSV; JSONL and Parquet outputs come from Python jobs (a score.py).
python_job <- function(output) {
  job <- make_job(ids = c("", "NA"), extra = "chunks = 2", output = output)
  writeLines(c("def load_model(path):", "    return float(open(path).read())",
               "import pandas as pd",
               "def score(model, data):", "    return pd.DataFrame({'prediction': data['x'] * model})"),
             file.path(job$dir, "score.py"))
  lines <- readLines(job$job)
  lines <- lines[!grepl("^(runtime|predict_args|model|max_parallel)", lines)]
  writeLines("2.0", file.path(job$dir, "model.txt"))
  # One worker scores both tasks: one Python start per job.
  writeLines(c(lines, 'runtime = "python"', 'scorer = "score.py"', 'model = "model.txt"',
               "max_parallel = 1"), job$job)
  job
}

test_that("read_scores reads JSONL and Parquet outputs as it reads CSV", {
  skip_without_cli()
  for (output in c("out/scores.jsonl", "out/scores.parquet")) {
    job <- python_job(output)
    result <- score_job(job$job, quiet = TRUE)
    expect_equal(result$status, "succeeded")
    expect_true(file.exists(file.path(job$dir, output)))
    scores <- read_scores(job$job)
    expect_equal(names(scores), c("id", "prediction"), label = output)
    expect_identical(scores$id, job$rows$id, label = output)  # "" and "NA" as in the input
    expect_equal(scores$prediction, job$rows$x * 2, tolerance = 0, label = output)
    expect_identical(read_scores(result), scores, label = output)
  }
  # Without R's arrow package, Parquet is streamed by `serverless-score scores` as CSV
  expect_identical(read_scores(file.path(job$dir, output)), scores)
})

test_that("read_scores of a job that did not run says so; no message shows an empty job id", {
  skip_without_cli()
  never <- make_job()
  err <- tryCatch(read_scores(never$job), error = identity)
  expect_s3_class(err, "serverless_score_error")
  expect_match(conditionMessage(err), "no job has run with output")
  expect_match(conditionMessage(err), "hint: ")

  expect_error(read_scores(file.path(tempdir(), "none.csv")), "no scores at '.*none.csv': it does not exist")

  # A job that fails before it is planned has no id: the messages say "job", never "job  "
  bad <- make_job(extra = "chunks = 0")
  err <- tryCatch(score_job(bad$job, quiet = TRUE), error = identity)
  expect_s3_class(err, "serverless_score_job_error")
  expect_null(err$result$job_id)
  expect_match(conditionMessage(err), "^scoring job failed: ")
  expect_no_match(conditionMessage(err), "job  ")
  expect_output(print(err$result), "^<serverless-score result> job failed: .*chunks")
})
