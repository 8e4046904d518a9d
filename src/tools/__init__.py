"""What happens after training: the predictions table, export, the LR finder."""
