test_that("push_model saves the model where a job reads it", {
  dir <- tempfile("push-")
  model <- lm(dist ~ speed, data = cars)
  target <- file.path(dir, "models", "cars.rds")
  stored <- push_model(model, target)
  expect_equal(as.character(stored), target)
  expect_true(attr(stored, "bytes") > 0)
  expect_match(attr(stored, "sha256"), "^[0-9a-f]{64}$")
  expect_equal(coef(readRDS(target)), coef(model))
})

test_that("the addin is registered and runs the job file of the project", {
  dcf <- read.dcf(system.file("rstudio", "addins.dcf", package = "serveRless"))
  expect_equal(unname(dcf[1, "Binding"]), "run_job_addin")
  expect_equal(unname(dcf[1, "Name"]), "Run batch scoring job")

  job <- make_job(extra = "chunks = 1")
  expect_message(result <- run_job_addin(job$dir), "running .*score.toml")
  expect_equal(result$status, "succeeded")
  expect_equal(result$rows_out, 600)

  old <- setwd(job$dir)  # outside RStudio the project is the working directory
  on.exit(setwd(old))
  expect_equal(normalizePath(serveRless:::project_dir()), normalizePath(job$dir))
  empty <- tempfile("empty-")
  dir.create(empty)
  expect_error(run_job_addin(empty), "no job file to run in .*: expected score.toml")
})
