"""In-repo test servers for protocols no installable server speaks here
(MINT, RAD69, login flows), and a delaying proxy."""
