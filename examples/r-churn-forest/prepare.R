# Generates a deterministic churn data set and trains a randomForest classifier on it, the way a
# data scientist would in RStudio: fit, then saveRDS().
#   Rscript prepare.R [rows]   # writes data/customers.csv (to score) and model/churn-forest.rds
# The scoring input has no label: that is what the batch job predicts.
suppressPackageStartupMessages(library(randomForest))
here <- local({
  arg <- grep("^--file=", commandArgs(FALSE), value = TRUE)
  if (length(arg)) dirname(normalizePath(sub("^--file=", "", arg))) else getwd()
})
rows <- as.integer(commandArgs(trailingOnly = TRUE)[1])
if (is.na(rows)) rows <- 200000L

customers <- function(n, first_id) {
  data.frame(
    customer_id = sprintf("C%07d", first_id + seq_len(n) - 1L),
    tenure_months = sample(1:72, n, replace = TRUE),
    monthly_charges = round(rnorm(n, 65, 20), 2),
    support_calls = rpois(n, 1.5),
    late_payments = rpois(n, 0.5),
    contract = sample(c("monthly", "one-year", "two-year"), n, replace = TRUE, prob = c(.5, .3, .2)),
    stringsAsFactors = FALSE
  )
}

set.seed(20240611)
train <- customers(10000, 1L)
logit <- with(train, -1 - 0.04 * tenure_months + 0.02 * monthly_charges + 0.5 * support_calls +
                0.6 * late_payments - 0.8 * (contract != "monthly"))
train$churn <- factor(ifelse(runif(nrow(train)) < plogis(logit), "yes", "no"))
train$contract <- factor(train$contract)
features <- setdiff(names(train), "customer_id")
model <- randomForest(churn ~ ., data = train[features], ntree = 51, nodesize = 5)

dir.create(file.path(here, "model"), showWarnings = FALSE)
dir.create(file.path(here, "data"), showWarnings = FALSE)
saveRDS(model, file.path(here, "model", "churn-forest.rds"))
write.csv(customers(rows, 1000000L), file.path(here, "data", "customers.csv"), row.names = FALSE)
cat(sprintf("wrote %s (%s rows) and %s\n", file.path(here, "data", "customers.csv"),
            format(rows, big.mark = ","), file.path(here, "model", "churn-forest.rds")))
