"""`python -m datasets.pose_bank --shared DIR`: rebuild the pose bank CSVs."""
import sys

from datasets.pose_bank import main

if __name__ == "__main__":
    sys.exit(main())
