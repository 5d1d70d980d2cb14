"""Evaluation metrics (SSIM, PSNR, FID, LPIPS, IS). Reads image folders and CSVs only; never imports models."""
