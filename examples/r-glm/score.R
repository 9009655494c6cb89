# A scoring function of one's own: serverless-score calls score(model, data) on batches of rows
# (a data.frame; `purpose` already a factor with the training levels) and writes what it returns.
approve_below <- 0.25

score <- function(model, data) {
  p <- predict(model, newdata = data, type = "response")
  data.frame(p_default = p, decision = ifelse(p < approve_below, "approve", "review"))
}
