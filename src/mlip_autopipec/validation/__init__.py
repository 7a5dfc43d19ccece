"""How good is a potential: errors against reference labels, and the plots people look at."""
