# Generates a deterministic loan data set and fits a logistic regression (glm) on it.
#   Rscript prepare.R [rows]   # writes data/loans.csv (to score) and model/default-glm.rds
here <- local({
  arg <- grep("^--file=", commandArgs(FALSE), value = TRUE)
  if (length(arg)) dirname(normalizePath(sub("^--file=", "", arg))) else getwd()
})
rows <- as.integer(commandArgs(trailingOnly = TRUE)[1])
if (is.na(rows)) rows <- 100000L

loans <- function(n, first_id) {
  data.frame(
    loan_id = sprintf("L%08d", first_id + seq_len(n) - 1L),
    amount = round(rlnorm(n, 9, 0.6)),
    income = round(rlnorm(n, 10.8, 0.5)),
    age = sample(21:75, n, replace = TRUE),
    purpose = sample(c("car", "home", "education", "other"), n, replace = TRUE),
    stringsAsFactors = FALSE
  )
}

set.seed(7)
train <- loans(20000, 1L)
logit <- with(train, -2 + 1.5 * amount / income - 0.02 * (age - 40) + 0.4 * (purpose == "other"))
train$default <- as.integer(runif(nrow(train)) < plogis(logit))
train$purpose <- factor(train$purpose)
model <- glm(default ~ I(amount / income) + age + purpose, data = train, family = binomial)

dir.create(file.path(here, "model"), showWarnings = FALSE)
dir.create(file.path(here, "data"), showWarnings = FALSE)
saveRDS(model, file.path(here, "model", "default-glm.rds"))
write.csv(loans(rows, 50000000L), file.path(here, "data", "loans.csv"), row.names = FALSE)
cat(sprintf("wrote %s (%s rows) and %s\n", file.path(here, "data", "loans.csv"),
            format(rows, big.mark = ","), file.path(here, "model", "default-glm.rds")))
